//! The `bookstore-server` binary: `$PORT`, `--db`, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::{CreateShelfRequest, GetShelfRequest, Shelf};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

/// Starts the server with `PORT=0` and returns it with the address it logged.
async fn spawn_server(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bookstore-server"))
        .args(["--host", "127.0.0.1", "--db"])
        .arg(db)
        .env("PORT", "0")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("server exited without logging its address");
    })
    .await
    .unwrap();
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn sigterm_and_wait(mut child: Child) {
    let status = testkit::cli::sigterm_and_wait(&mut child).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn port_from_env_db_file_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");

    let (child, addr) = spawn_server(&db).await;
    assert!(!addr.ends_with(":0"), "{addr}");
    let mut c = BookstoreClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let created = c
        .create_shelf(CreateShelfRequest {
            shelf: Some(Shelf {
                id: 0,
                theme: "Kept".to_owned(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    drop(c);
    sigterm_and_wait(child).await;
    assert!(db.exists());

    let (child, addr) = spawn_server(&db).await;
    let mut c = BookstoreClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let got = c
        .get_shelf(GetShelfRequest { shelf: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);
    drop(c);
    sigterm_and_wait(child).await;
}
