//! `esprit proxy --transcoding-*`: ESPv2's transcoding flags reach the proxy (the behaviour of
//! each option is tested in the proxy's own tests; here, that the binary's flags set them).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use serde_json::{Value, json};
use testkit::cli::{self, Listening};
use testkit::servers::BOOKSTORE_CONFIG;

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

#[tokio::test]
async fn transcoding_flags_set_the_print_and_query_options() {
    let backend = testkit::start_bookstore().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = cli::proxy_command(
        ESPRIT,
        dir.path(),
        BOOKSTORE_CONFIG,
        bookstore::FILE_DESCRIPTOR_SET,
        backend.addr(),
    );
    command.args([
        "--log-format",
        "json",
        "--transcoding-always-print-primitive-fields",
        "--transcoding-ignore-query-parameters",
        "trace,debug",
    ]);
    let mut proxy = tokio::task::spawn_blocking(move || Listening::json_log(command))
        .await
        .unwrap();
    proxy.discard_output();
    let base = format!("http://{}", proxy.addr);
    let client = reqwest::Client::new();

    // A shelf with no theme: printed as "" only with --transcoding-always-print-primitive-fields.
    let created: Value = client
        .post(format!("{base}/v1/shelves"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["theme"], json!(""), "{created}");
    // Listed query parameters set nothing and are not errors; others are.
    let listed = client
        .get(format!("{base}/v1/shelves/1?trace=1&debug=yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let unknown = client
        .get(format!("{base}/v1/shelves/1?verbose=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);

    let (status, _) = proxy.sigterm_and_wait();
    assert!(status.success(), "{status:?}");
}
