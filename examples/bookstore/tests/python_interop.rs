//! Python's grpcio against the Bookstore: `tests/python/bookstore_interop.py` run on a server in
//! this process. Python and grpcio are required: when they are missing this test fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;

use bookstore::pb::bookstore_server::BookstoreServer;
use bookstore::{BookstoreService, DbLocation, Store};
use tonic::{Request, Status};

use testkit::{python, repo_root};

/// Runs the interop script; returns (exit code, stdout, stderr).
async fn interop(python: &Path, target: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let script = repo_root().join("tests/python/bookstore_interop.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg(target)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|err| panic!("running {}: {err}", python.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_calls_all_eight_methods() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let server = testkit::start_bookstore().await;

    let (code, stdout, stderr) = interop(&python, &server.addr().to_string(), &[]).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");

    // Against the same server the script's own cleanup leaves the seed intact: a second run passes.
    let (code, stdout, stderr) = interop(&python, &server.addr().to_string(), &[]).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sends_credentials_and_reports_rejections() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    // A Bookstore that, like a proxy, wants exactly this token and key.
    let store = Arc::new(Store::open(&DbLocation::Memory).unwrap());
    let service =
        BookstoreServer::with_interceptor(BookstoreService::new(store), |request: Request<()>| {
            let md = request.metadata();
            if md.get("authorization").is_none() {
                return Err(Status::unauthenticated("Jwt is missing"));
            }
            if md.get("authorization").unwrap() != "Bearer tok.en.sig"
                || md.get("x-api-key").map(|v| v.as_bytes()) != Some(b"key-1")
            {
                return Err(Status::permission_denied("wrong credentials"));
            }
            Ok(request)
        });
    let router = tonic::transport::Server::builder().add_service(service);
    let target = testkit::serve_router(router).await.to_string();

    let (code, stdout, stderr) = interop(
        &python,
        &target,
        &["--auth-token", "tok.en.sig", "--api_key", "key-1"],
    )
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let (code, stdout, stderr) = interop(
        &python,
        &target,
        &[
            "--expect-error",
            "UNAUTHENTICATED",
            "--expect-message",
            "Jwt is missing",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The script notices when the outcome is not the expected one.
    let (code, _, stderr) = interop(&python, &target, &["--auth-token", "other"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        "FAIL: ListShelves: PERMISSION_DENIED: wrong credentials"
    );
}
