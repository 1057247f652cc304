//! Issue 9 item 10: the key server's lookups run on a bounded pool of store connections, so
//! checks do not queue behind one busy connection, and an exhausted pool answers 503 instead
//! of hanging, on both backends. Issue 9 item 17: the store's files are private.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iam::{PoolSettings, Store, StorePool};
use serde_json::json;
use testkit::{Backend, KeyServer, TestStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const NOW: u64 = 1_750_000_000;
const CHECK: &str = "/v1/services/bookstore.endpoints.my-project.cloud.goog:check";
/// Generous for a loaded 2-core machine; what must not happen is a hang.
const PATIENCE: Duration = Duration::from_secs(20);

/// Status line's code and body of one HTTP/1.1 exchange.
async fn exchange(addr: SocketAddr, request: String) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response)
}

async fn check(addr: SocketAddr, key: &str) -> (u16, String) {
    let body = json!({ "api_key": key }).to_string();
    exchange(
        addr,
        format!(
            "POST {CHECK} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

fn store_with_key(ts: &TestStore) -> String {
    let mut store = Store::open(ts.location()).unwrap();
    let (key, _) = store.create_api_key("consumer-project", None, NOW).unwrap();
    key
}

/// Another connection holds a write transaction open (every API key deleted, not committed)
/// until the returned sender is dropped; returns once it holds it.
fn hold_uncommitted_delete(ts: &TestStore) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    let (backend, target) = (ts.backend, ts.arg());
    std::thread::spawn(move || match backend {
        Backend::Sqlite => {
            let writer = rusqlite::Connection::open(&target).unwrap();
            writer
                .execute_batch("BEGIN IMMEDIATE; DELETE FROM api_keys;")
                .unwrap();
            held.send(()).unwrap();
            let _ = released.recv();
            writer.execute_batch("ROLLBACK").unwrap();
        }
        Backend::Postgres => {
            let mut writer = ::postgres::Client::connect(&target, ::postgres::NoTls).unwrap();
            writer
                .batch_execute(
                    "BEGIN; LOCK TABLE api_keys IN EXCLUSIVE MODE; DELETE FROM api_keys;",
                )
                .unwrap();
            held.send(()).unwrap();
            let _ = released.recv();
            writer.batch_execute("ROLLBACK").unwrap();
        }
    });
    is_held.recv().unwrap();
    release
}

/// Holds one pooled connection (a lookup that does not end) until the returned sender is
/// dropped; returns once the connection is taken.
async fn hold_one(pool: &Arc<StorePool>) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (taken, is_taken) = oneshot::channel::<()>();
    let pool = Arc::clone(pool);
    tokio::spawn(async move {
        pool.with_store(move |_store| {
            let _ = taken.send(());
            let _ = released.recv();
            Ok(())
        })
        .await
    });
    is_taken.await.unwrap();
    release
}

async fn checks_do_not_serialize_behind_a_busy_connection(ts: TestStore) {
    let key = store_with_key(&ts);
    let pool = StorePool::open(
        ts.location(),
        PoolSettings {
            size: 4,
            wait: PATIENCE,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let server = KeyServer::start_pool(Arc::clone(&pool)).await;
    let addr = server.addr;

    // A lookup holds one connection for as long as the test runs, and another process holds a
    // write transaction open: with one connection behind a mutex every check would wait.
    let _held = hold_one(&pool).await;
    let writer = hold_uncommitted_delete(&ts);

    let started = Instant::now();
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let key = key.clone();
            tokio::spawn(async move { check(addr, &key).await })
        })
        .collect();
    for call in calls {
        let (status, response) = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("a check hung behind the busy connection")
            .unwrap();
        assert_eq!(status, 200, "{response}");
        // The uncommitted delete is invisible: readers see the last committed state.
        assert!(response.contains("\"valid\":true"), "{response}");
    }
    eprintln!(
        "40 checks beside a held connection in {:?}",
        started.elapsed()
    );
    drop(writer);
}

async fn an_exhausted_pool_answers_503_not_a_hang(ts: TestStore) {
    let key = store_with_key(&ts);
    let wait = Duration::from_millis(200);
    let pool = StorePool::open(
        ts.location(),
        PoolSettings {
            size: 1,
            wait,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let server = KeyServer::start_pool(Arc::clone(&pool)).await;
    let addr = server.addr;
    let held = hold_one(&pool).await;

    let started = Instant::now();
    let (status, response) = tokio::time::timeout(PATIENCE, check(addr, &key))
        .await
        .expect("the check hung");
    assert_eq!(status, 503, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1"),
        "{response}"
    );
    assert!(response.contains("\"UNAVAILABLE\""), "{response}");
    assert!(started.elapsed() >= wait);
    let (status, response) = tokio::time::timeout(
        PATIENCE,
        exchange(
            addr,
            format!(
                "GET /service_accounts/v1/jwk/a%40b.com HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            ),
        ),
    )
    .await
    .expect("the key document hung");
    assert_eq!(status, 503, "{response}");

    drop(held);
    let (status, response) = check(addr, &key).await;
    assert_eq!(status, 200, "{response}");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn store_files_are_created_0600_and_loose_modes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    let mut store = Store::open(&path).unwrap();
    store
        .create_account("bookstore-client", "consumer-project", NOW)
        .unwrap();
    let wal = dir.path().join("iam.db-wal");
    let shm = dir.path().join("iam.db-shm");
    for file in [&path, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(iam::loose_files(&path).is_empty());

    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o660)).unwrap();
    let loose = iam::loose_files(&path);
    assert_eq!(
        loose,
        [
            iam::LooseFile {
                path: path.clone(),
                mode: 0o666
            },
            iam::LooseFile {
                path: wal.clone(),
                mode: 0o660
            },
        ]
    );
    let message = loose[0].to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("0666"), "{message}");
    // Reported, not refused: the store still opens.
    drop(store);
    Store::open(&path).unwrap();
}

testkit::store_tests!(async(flavor = "multi_thread", worker_threads = 2):
    checks_do_not_serialize_behind_a_busy_connection,
    an_exhausted_pool_answers_503_not_a_hang,
);
