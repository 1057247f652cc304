//! Soak: valid, invalid and abusive clients at once against the real `esprit proxy` process, in
//! front of the real key server (`esprit iam serve`) and the Bookstore. Every valid call must
//! succeed, every invalid one must get its own rejection (never `UNAVAILABLE` because the proxy is
//! overwhelmed), and the proxy's resident memory must stay under [`RSS_BOUND_MIB`].
//!
//! CI runs it for a few seconds; `bench/soak.sh [SECONDS]` runs it longer on a release build
//! (`ESPRIT_SOAK_SECS`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bookstore::pb::GetShelfRequest;
use bookstore::pb::bookstore_client::BookstoreClient;
use testkit::cli::{self, Listening};
use testkit::start_bookstore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

const SERVICE: &str = "bookstore.endpoints.soak-project.cloud.goog";
const GET_SHELF: &str = "/endpoints.examples.bookstore.Bookstore/GetShelf";

/// The proxy's resident set may not pass this, whatever the abusive clients do. Idle it is about
/// 12 MiB; the bound leaves room for its caches at their byte limits and for the connections the
/// soak opens (see README, "Resource bounds").
const RSS_BOUND_MIB: u64 = 160;

fn soak_duration() -> Duration {
    let secs = std::env::var("ESPRIT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(4);
    Duration::from_secs(secs)
}

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

fn esprit(args: &[&str], store: &Path) -> String {
    cli::ok(cli::command(ESPRIT).args(args).arg("--store").arg(store))
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

fn token(key_file: &Path, issuer: &str, audience: &str, serial: u64) -> String {
    testkit::tokens::sign_with_key_file(key_file, issuer, audience, &format!("soak-{serial}"))
}

fn get_shelf(token: &str, api_key: &str) -> tonic::Request<GetShelfRequest> {
    let mut request = tonic::Request::new(GetShelfRequest { shelf: 1 });
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    metadata.insert("x-api-key", api_key.parse().unwrap());
    request
}

/// Random-looking text that no cache has seen.
fn junk(serial: u64, len: usize) -> String {
    let seed = format!("{serial:016x}");
    seed.chars().cycle().take(len).collect()
}

#[derive(Default)]
struct Tally {
    valid_ok: AtomicU64,
    valid_failed: AtomicU64,
    rejected_as_expected: AtomicU64,
    wrong_rejection: AtomicU64,
    abusive_rounds: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_calls_succeed_and_memory_stays_bounded_under_abuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    let email = esprit(
        &[
            "iam",
            "accounts",
            "create",
            "soak-client",
            "--project",
            "soak-project",
        ],
        &store,
    );
    let key_file = dir.path().join("soak-client.json");
    esprit(
        &[
            "iam",
            "keys",
            "create",
            &email,
            "--out",
            &key_file.to_string_lossy(),
        ],
        &store,
    );
    let api_key = esprit(
        &["iam", "api-keys", "create", "--project", "soak-project"],
        &store,
    );
    // A second account, whose tokens claim the first one's issuer: signed with a key the
    // provider does not have.
    let stranger = esprit(
        &[
            "iam",
            "accounts",
            "create",
            "stranger",
            "--project",
            "soak-project",
        ],
        &store,
    );
    let stranger_file = dir.path().join("stranger.json");
    esprit(
        &[
            "iam",
            "keys",
            "create",
            &stranger,
            "--out",
            &stranger_file.to_string_lossy(),
        ],
        &store,
    );

    // The key server as the `esprit iam serve` process; its first stdout line is its URL.
    let mut key_server_process = cli::iam_serve(ESPRIT, &store, &[]);
    key_server_process.discard_output();
    let key_server = key_server_process.addr.clone();
    let bookstore = start_bookstore().await;
    let config = format!(
        r#"type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    issuer: {email}
    jwks_uri: {key_server}/robot/v1/metadata/x509/{email}
  rules:
  - selector: "*"
    requirements:
    - provider_id: google_service_account
usage:
  rules:
  - selector: endpoints.examples.bookstore.Bookstore.ListShelves
    allow_unregistered_calls: true
"#
    );
    let mut proxy = Listening::json_log({
        let mut command = cli::proxy_command(
            ESPRIT,
            dir.path(),
            &config,
            bookstore::FILE_DESCRIPTOR_SET,
            bookstore.addr(),
        );
        command
            .args(["--log-format", "json"])
            .args(["--service-control-url", &key_server]);
        command
    });
    proxy.discard_output();
    let proxy_addr = proxy.addr.clone();
    let pid = proxy.child.id();
    let addr: SocketAddr = proxy_addr.parse().unwrap();
    let url = format!("http://{addr}");
    let good = token(&key_file, &email, SERVICE, 0);

    // The key set is fetched in the background at start; wait until a valid call passes.
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let mut client = BookstoreClient::new(channel.clone());
        match client.get_shelf(get_shelf(&good, &api_key)).await {
            Ok(_) => break,
            Err(status) if started.elapsed() < Duration::from_secs(30) => {
                let _ = status;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the stack never served a valid call: {status:?}"),
        }
    }
    let idle_rss = rss_mib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let serial = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();

    // Valid callers: tokens and a key the proxy has cached, on long-lived connections.
    for _ in 0..2 {
        let (stop, tally, channel, good, api_key) = (
            stop.clone(),
            tally.clone(),
            channel.clone(),
            good.clone(),
            api_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = BookstoreClient::new(channel);
            while !stop.load(Ordering::Relaxed) {
                match client.get_shelf(get_shelf(&good, &api_key)).await {
                    Ok(reply) if reply.get_ref().theme == "Fiction" => {
                        tally.valid_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("valid call failed: {other:?}");
                        tally.valid_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Invalid callers, each request new to every cache: garbage and 60 KB tokens, tokens from
    // a key the provider does not have, unknown and over-long API keys.
    {
        let (stop, tally, serial, good) =
            (stop.clone(), tally.clone(), serial.clone(), good.clone());
        let (stranger_file, email) = (stranger_file.clone(), email.clone());
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect_lazy();
            let mut client = BookstoreClient::new(channel);
            while !stop.load(Ordering::Relaxed) {
                let n = serial.fetch_add(1, Ordering::Relaxed);
                let (request, want) = match n % 5 {
                    0 => (get_shelf(&junk(n, 300), "k"), Code::Unauthenticated),
                    1 => (
                        get_shelf(&format!("e30.{}.c2ln", junk(n, 60_000)), "k"),
                        Code::Unauthenticated,
                    ),
                    2 => (
                        get_shelf(&token(&stranger_file, &email, SERVICE, n), "k"),
                        Code::Unauthenticated,
                    ),
                    3 => (get_shelf(&good, &junk(n, 39)), Code::InvalidArgument),
                    _ => (get_shelf(&good, &junk(n, 9000)), Code::InvalidArgument),
                };
                match client.get_shelf(request).await {
                    Err(status) if status.code() == want => {
                        tally.rejected_as_expected.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("invalid call {n} (want {want:?}) got {other:?}");
                        tally.wrong_rejection.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    // Abusive: sockets that never speak, HTTP/1.1 to a gRPC method with fresh keys, and HTTP/2
    // streams reset just after they were forwarded.
    {
        let (stop, tally) = (stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut silent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if silent.len() < 40 {
                    if let Ok(socket) = TcpStream::connect(addr).await {
                        silent.push(socket);
                    }
                } else {
                    silent.remove(0);
                }
                tally.abusive_rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    {
        let (stop, tally, serial) = (stop.clone(), tally.clone(), serial.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = serial.fetch_add(1, Ordering::Relaxed);
                let Ok(mut socket) = TcpStream::connect(addr).await else {
                    continue;
                };
                let request = format!(
                    "POST {GET_SHELF} HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n",
                    junk(n, 39)
                );
                let _ = socket.write_all(request.as_bytes()).await;
                let mut answer = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
                        .await;
                if answer.starts_with(b"HTTP/1.1 415") {
                    tally.rejected_as_expected.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("HTTP/1.1 call got {:?}", String::from_utf8_lossy(&answer));
                    tally.wrong_rejection.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    {
        let (stop, tally, good, api_key) =
            (stop.clone(), tally.clone(), good.clone(), api_key.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(socket) = TcpStream::connect(addr).await else {
                    continue;
                };
                let Ok((client, connection)) = h2::client::handshake(socket).await else {
                    continue;
                };
                let driver = tokio::spawn(connection);
                let mut client = client;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(ready) = client.ready().await else {
                        break;
                    };
                    client = ready;
                    let request = http::Request::post(format!("http://{addr}{GET_SHELF}"))
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .header("authorization", format!("Bearer {good}"))
                        .header("x-api-key", api_key.as_str())
                        .body(())
                        .unwrap();
                    let Ok((response, mut stream)) = client.send_request(request, false) else {
                        break;
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(response);
                    tally.abusive_rounds.fetch_add(1, Ordering::Relaxed);
                }
                driver.abort();
            }
        }));
    }

    let mut max_rss = idle_rss;
    let until = Instant::now() + soak_duration();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        max_rss = max_rss.max(rss_mib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a soak client did not stop")
            .unwrap();
    }
    max_rss = max_rss.max(rss_mib(pid));

    let ok = tally.valid_ok.load(Ordering::Relaxed);
    let failed = tally.valid_failed.load(Ordering::Relaxed);
    let rejected = tally.rejected_as_expected.load(Ordering::Relaxed);
    let wrong = tally.wrong_rejection.load(Ordering::Relaxed);
    let abusive = tally.abusive_rounds.load(Ordering::Relaxed);
    eprintln!(
        "soak {:?}: {ok} valid calls ok, {failed} failed; {rejected} invalid calls rejected \
         as expected, {wrong} otherwise; {abusive} abusive rounds; RSS idle {idle_rss} MiB, \
         max {max_rss} MiB (bound {RSS_BOUND_MIB})",
        soak_duration()
    );
    assert_eq!(failed, 0, "every valid call must succeed");
    assert!(ok > 0, "no valid call was made");
    assert_eq!(wrong, 0, "every invalid call must get its own rejection");
    assert!(
        rejected > 0 && abusive > 0,
        "the abusive clients did not run"
    );
    assert!(
        max_rss < RSS_BOUND_MIB,
        "the proxy's RSS reached {max_rss} MiB (bound {RSS_BOUND_MIB} MiB)"
    );
    // Still serving afterwards.
    let mut client = BookstoreClient::new(channel);
    client.get_shelf(get_shelf(&good, &api_key)).await.unwrap();
}
