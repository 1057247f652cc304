//! `esprit proxy`'s logging under pressure, with the real binary: a stderr nobody reads does not
//! stall calls (lines are dropped and counted instead), and a flood of rejected calls writes a
//! bounded number of access lines plus a summary of the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::BufReader;
use std::process::ChildStderr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echo::pb::EchoRequest;
use testkit::cli::{self, Listening};
use testkit::{ECHO_CONFIG, start_echo};

/// Starts `esprit proxy --log-format json` with stderr on a pipe, reads up to the "listening"
/// line, and hands back the process (killed when dropped), its address and the (unread from here
/// on) stderr.
fn start_proxy(
    backend: std::net::SocketAddr,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Listening, String, BufReader<ChildStderr>) {
    let mut command = cli::proxy_command(
        env!("CARGO_BIN_EXE_esprit"),
        dir,
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend,
    );
    command
        .args(["--log-format", "json"])
        .args(extra)
        .env("RUST_LOG", "info");
    let mut proxy = Listening::json_log(command);
    let (addr, stderr) = (proxy.addr.clone(), proxy.take_stderr());
    (proxy, addr, stderr)
}

async fn echo_client(addr: &str) -> echo::pb::echo_client::EchoClient<tonic::transport::Channel> {
    echo::pb::echo_client::EchoClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

async fn unary(client: &mut echo::pb::echo_client::EchoClient<tonic::transport::Channel>) {
    let request = EchoRequest {
        payload: Bytes::from_static(b"ping"),
        ..Default::default()
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), client.unary(request))
        .await
        .expect("a call stalled: logging blocked the proxy")
        .unwrap();
    assert_eq!(&reply.into_inner().payload[..], b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_does_not_stall_calls() {
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, addr, stderr) =
        start_proxy(backend.addr(), dir.path(), &["--log-buffer-lines", "64"]);

    // About 250 bytes of access log per call: the 64 KiB pipe is full after a few hundred
    // calls, the 64-line queue right after. Writing synchronously, the proxy stalled there.
    let client = echo_client(&addr).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    unary(&mut client).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "1200 calls took {elapsed:?}"
    );

    // Once stderr is read again, the proxy says how many lines it had to drop.
    let lines = cli::json_lines(stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no report of dropped log lines");
        if line["message"] == "log lines dropped: stderr was not keeping up" {
            break line;
        }
    };
    assert!(report["dropped_total"].as_u64().unwrap() > 0, "{report}");
    // And it still serves.
    unary(&mut client.clone()).await;
}

/// `n` gRPC-shaped calls to a path that is no method of the API, on one HTTP/2 connection.
async fn undefined_method_calls(addr: &str, n: usize) {
    use http_body_util::BodyExt;
    let mut sender = testkit::h2c(addr).await;
    for _ in 0..n {
        let request = hyper::Request::post(format!("http://{addr}/not.an.Api/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 404);
        let _ = response.into_body().collect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_call_lines_are_rate_limited_and_summed_up() {
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, addr, stderr) = start_proxy(
        backend.addr(),
        dir.path(),
        &["--access-log-rejected-per-second", "5"],
    );
    let lines = cli::json_lines(stderr);

    const REJECTED: u64 = 300;
    let started = Instant::now();
    undefined_method_calls(&addr, REJECTED as usize).await;
    // Forwarded calls keep one line each.
    let mut client = echo_client(&addr).await;
    for _ in 0..20 {
        unary(&mut client).await;
    }

    // Every rejected call is either logged or counted in a summary.
    let (mut logged, mut suppressed, mut summaries, mut ok) = (0u64, 0u64, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged + suppressed < REJECTED || ok < 20 {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                panic!("logged {logged}, suppressed {suppressed}, ok {ok}: lines missing")
            });
        if line["target"] != "esprit::access" {
            continue;
        }
        if line["message"] == "rejected-call lines suppressed" {
            summaries += 1;
            suppressed += line["suppressed"].as_u64().unwrap();
        } else if line["grpc_status"] == "UNIMPLEMENTED" {
            logged += 1;
        } else if line["grpc_status"] == "OK" {
            ok += 1;
            // The TCP peer, and the client address derived from it (no trusted hops).
            assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert_eq!(line["client"], "127.0.0.1");
        }
    }
    // Every line was written by now: an upper bound on the time the bucket had to refill.
    let flood = started.elapsed();
    assert_eq!(logged + suppressed, REJECTED);
    assert!(summaries >= 1);
    // A bucket of 5, refilled at 5 a second since the flood began.
    let bound = 5 + (flood.as_secs_f64() * 5.0).ceil() as u64 + 1;
    assert!(
        logged <= bound,
        "{logged} rejected-call lines in {flood:?} (bound {bound})"
    );
    assert_eq!(ok, 20);
}

#[test]
fn out_of_range_limits_are_refused() {
    for (flag, value) in [
        ("--xff-num-trusted-hops", "17"),
        ("--access-log-rejected-per-second", "100001"),
        ("--log-buffer-lines", "15"),
        ("--log-buffer-lines", "1048577"),
    ] {
        let out = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
            .args(["proxy", "--service-config", "x.yaml"])
            .args(["--backend", "grpc://127.0.0.1:1", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

/// Preflights the proxy answers itself (`--cors-preset`) are logged like its rejections: within
/// `--access-log-rejected-per-second`, the rest summed up, so a preflight flood cannot flood the
/// log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_lines_are_rate_limited_like_rejections() {
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, addr, stderr) = start_proxy(
        backend.addr(),
        dir.path(),
        &[
            "--access-log-rejected-per-second",
            "0",
            "--cors-preset",
            "basic",
        ],
    );
    let lines = cli::json_lines(stderr);
    const PREFLIGHTS: u64 = 40;
    for _ in 0..PREFLIGHTS {
        let reply = testkit::servers::http1(
            addr.parse().unwrap(),
            "OPTIONS",
            "/esprit.echo.v1.Echo/Unary",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            Vec::new(),
        )
        .await;
        assert_eq!(reply.status, 200);
    }
    let mut client = echo_client(&addr).await;
    unary(&mut client).await;

    let (mut logged, mut suppressed, mut ok) = (0u64, 0u64, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while suppressed < PREFLIGHTS || ok < 1 {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("suppressed {suppressed}, ok {ok}: lines missing"));
        if line["target"] != "esprit::access" {
            continue;
        }
        if line["message"] == "rejected-call lines suppressed" {
            suppressed += line["suppressed"].as_u64().unwrap();
        } else if line["selector"] == "-" {
            logged += 1;
        } else if line["grpc_status"] == "OK" {
            ok += 1;
        }
    }
    assert_eq!(logged, 0, "preflight lines past a limit of 0");
    assert_eq!(suppressed, PREFLIGHTS);
}

/// The access log is written outside `tracing`'s formatter, but `RUST_LOG` still decides:
/// `esprit::access=off` leaves every call's line out and the other lines in. And a clean exit
/// writes every queued line (they are written in batches, so some are still queued at SIGTERM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_filters_the_access_log_and_exit_writes_every_line() {
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    for (filter, expected) in [("info,esprit::access=off", 0), ("info", 60)] {
        let mut command = cli::proxy_command(
            env!("CARGO_BIN_EXE_esprit"),
            dir.path(),
            ECHO_CONFIG,
            echo::FILE_DESCRIPTOR_SET,
            backend.addr(),
        );
        command
            .args(["--log-format", "json"])
            .env("RUST_LOG", filter);
        let proxy = Listening::json_log(command);
        let mut client = echo_client(&proxy.addr).await;
        for _ in 0..50 {
            unary(&mut client).await;
        }
        undefined_method_calls(&proxy.addr, 10).await;
        drop(client);
        let (status, logs) = tokio::task::spawn_blocking(move || proxy.sigterm_and_wait())
            .await
            .unwrap();
        assert!(status.success(), "{status}: {logs}");
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let access = lines
            .iter()
            .filter(|l| l["target"] == "esprit::access")
            .count();
        assert_eq!(access, expected, "RUST_LOG={filter}: {logs}");
        assert!(
            lines.iter().any(|l| l["message"] == "drained"),
            "RUST_LOG={filter}: other lines missing: {logs}"
        );
    }
}
