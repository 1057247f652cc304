//! `esprit proxy` as a user runs it: a real process, a config file on disk, JSON logs, and
//! SIGTERM draining an in-flight call before a clean exit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use echo::pb::EchoRequest;
use testkit::cli::{self, Listening};
use testkit::{ECHO_CONFIG, start_echo};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

struct ProxyProcess {
    process: Listening,
    /// The JSON log lines after "listening".
    lines: mpsc::Receiver<serde_json::Value>,
}

/// `esprit proxy` with the service config `config` in front of a backend that is never called.
fn no_backend_proxy(dir: &std::path::Path, config: &str) -> Command {
    let backend = "127.0.0.1:1".parse().unwrap();
    cli::proxy_command(ESPRIT, dir, config, echo::FILE_DESCRIPTOR_SET, backend)
}

/// Starts `esprit proxy --log-format json` and learns its address from the "listening" line.
fn start_proxy(
    backend: std::net::SocketAddr,
    dir: &std::path::Path,
    extra: &[&str],
) -> ProxyProcess {
    start_proxy_with_config(backend, dir, ECHO_CONFIG, extra)
}

/// [`start_proxy`] with another service config.
fn start_proxy_with_config(
    backend: std::net::SocketAddr,
    dir: &std::path::Path,
    config_text: &str,
    extra: &[&str],
) -> ProxyProcess {
    let mut command =
        cli::proxy_command(ESPRIT, dir, config_text, echo::FILE_DESCRIPTOR_SET, backend);
    command.args(["--log-format", "json"]).args(extra);
    let mut process = Listening::json_log(command);
    let lines = process.json_lines();
    ProxyProcess { process, lines }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_proxy(backend.addr(), dir.path(), &["--drain-timeout", "5s"]);

    let mut client =
        echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.process.addr))
            .await
            .unwrap();
    let secret = "Bearer eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl";
    let mut request = tonic::Request::new(EchoRequest {
        payload: Bytes::from_static(b"in flight"),
        sleep_ms: 800,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", secret.parse().unwrap());
    let call = tokio::spawn(async move { client.unary(request).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = proxy.process.child.id();
    cli::sigterm(pid);

    let reply = call
        .await
        .unwrap()
        .expect("the in-flight call must complete during the drain");
    assert_eq!(&reply.into_inner().payload[..], b"in flight");
    let mut process = proxy.process;
    let status = tokio::task::spawn_blocking(move || process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "esprit proxy should exit 0 after draining"
    );

    // One access-log line for the call, with what operators need and never the token.
    let lines = cli::remaining_lines(&proxy.lines, Duration::from_secs(10));
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "esprit::access")
        .collect();
    assert_eq!(access.len(), 1, "{lines:#?}");
    let line = access[0];
    assert_eq!(line["selector"], "esprit.echo.v1.Echo.Unary");
    assert_eq!(line["grpc_status"], "OK");
    assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(line["duration_us"].as_u64().unwrap() >= 800_000);
    assert!(line["timestamp"].is_string());
    let all = serde_json::to_string(&lines).unwrap();
    assert!(
        !all.contains("c2VjcmV0LXBheWxvYWQ"),
        "a token reached the log: {all}"
    );
}

/// Voluntary context switches of each thread of process `pid`, by thread name; the main
/// thread (worker 0) is listed as "main".
#[cfg(target_os = "linux")]
fn switches_by_thread(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut threads = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue; // a thread that just ended
        };
        let name = if task.ends_with(pid.to_string()) {
            "main".to_owned()
        } else {
            comm.trim().to_owned()
        };
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap();
        threads.insert(name, switches);
    }
    threads
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_each_serve_their_connections_and_drain_on_sigterm() {
    use echo::pb::echo_client::EchoClient;
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_proxy(
        backend.addr(),
        dir.path(),
        &["--worker-threads", "2", "--drain-timeout", "5s"],
    );
    let pid = proxy.process.child.id();
    let url = format!("http://{}", proxy.process.addr);
    let call = |payload: &'static [u8], sleep_ms| {
        tonic::Request::new(EchoRequest {
            payload: Bytes::from_static(payload),
            sleep_ms,
            ..Default::default()
        })
    };
    // A connection goes to the worker serving the fewest: the first to worker 0 (the main
    // thread), the second, while the first is open, to worker 1.
    let mut first = EchoClient::connect(url.clone()).await.unwrap();
    first.unary(call(b"first", 0)).await.unwrap();
    let mut second = EchoClient::connect(url).await.unwrap();
    second.unary(call(b"second", 0)).await.unwrap();

    let before = switches_by_thread(pid);
    assert!(
        before.contains_key("esprit-worker-1"),
        "a second worker thread: {before:?}"
    );
    // Each call wakes the thread serving its connection (the request, then the backend's
    // answer): both workers' threads wake about twice per call on their own connection.
    const CALLS: u64 = 20;
    for _ in 0..CALLS {
        first.unary(call(b"first", 0)).await.unwrap();
        second.unary(call(b"second", 0)).await.unwrap();
    }
    let after = switches_by_thread(pid);
    for worker in ["main", "esprit-worker-1"] {
        let woken = after[worker] - before[worker];
        assert!(
            woken >= CALLS / 2,
            "{worker} woke {woken} times for {CALLS} calls on its connection: {before:?} → {after:?}"
        );
    }

    // SIGTERM while each worker has a call in flight: both finish, then the process exits 0.
    let in_flight =
        [(first, &b"first"[..]), (second, &b"second"[..])].map(|(mut client, payload)| {
            let request = call(payload, 800);
            tokio::spawn(async move { client.unary(request).await })
        });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cli::sigterm(pid);
    for (call, payload) in in_flight.into_iter().zip([&b"first"[..], b"second"]) {
        let reply = call
            .await
            .unwrap()
            .expect("an in-flight call on either worker completes during the drain");
        assert_eq!(&reply.into_inner().payload[..], payload);
    }
    let mut process = proxy.process;
    let status = tokio::task::spawn_blocking(move || process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit 0 once both workers drained");
    let lines = cli::remaining_lines(&proxy.lines, Duration::from_secs(10));
    let access = lines
        .iter()
        .filter(|l| l["target"] == "esprit::access")
        .count();
    assert_eq!(
        access as u64,
        2 * CALLS + 4,
        "one line per call: {lines:#?}"
    );
}

#[test]
fn an_invalid_config_refuses_to_start_with_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = ECHO_CONFIG.replace("esprit.echo.v1.Echo", "esprit.echo.v1.Nope");
    let out = cli::output(&mut no_backend_proxy(dir.path(), &config));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apis[0].name"), "{stderr}");
}

#[test]
fn a_config_needing_checks_the_proxy_cannot_make_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // No usage rules: as in ESP, every method then needs an API key.
    let config = ECHO_CONFIG.split("usage:").next().unwrap();
    let out = cli::output(&mut no_backend_proxy(dir.path(), config));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("require an API key"), "{stderr}");
    assert!(stderr.contains("esprit.echo.v1.Echo.Unary"), "{stderr}");
    assert!(stderr.contains("esprit.echo.v1.Echo.Bidi"), "{stderr}");
}

/// A quota esprit would not enforce: refused at start with its path, unless the operator
/// accepts it with `--allow-unenforced-config`, which logs the ignored section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenforced_sections_refuse_to_start_unless_allowed_and_logged() {
    let with_quota = format!(
        "{ECHO_CONFIG}quota:\n  limits:\n  - name: per-consumer\n    metric: read-calls\n    values: {{STANDARD: 10}}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = cli::output(&mut no_backend_proxy(dir.path(), &with_quota));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quota: esprit does not enforce this section"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-unenforced-config"), "{stderr}");

    let backend = start_echo().await;
    let mut proxy = start_proxy_with_config(
        backend.addr(),
        dir.path(),
        &with_quota,
        &["--allow-unenforced-config"],
    );
    // The proxy serves; the ignored section was logged before it listened.
    let mut client =
        echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.process.addr))
            .await
            .unwrap();
    let reply = client
        .unary(EchoRequest {
            payload: Bytes::from_static(b"quota ignored"),
            ..Default::default()
        })
        .await
        .expect("the proxy serves with the quota ignored");
    assert_eq!(&reply.into_inner().payload[..], b"quota ignored");
    let lines = std::mem::take(&mut proxy.process.startup);
    drop(proxy);
    let ignored: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["section"].is_string()).collect();
    assert_eq!(ignored.len(), 1, "{lines:#?}");
    assert_eq!(ignored[0]["section"], "quota");
    assert_eq!(ignored[0]["level"], "WARN");
    assert!(
        ignored[0]["message"]
            .as_str()
            .unwrap()
            .contains("esprit does not enforce it"),
        "{lines:#?}"
    );
}

/// Issue 12 item 4: a plain `http://` key server off loopback would carry API keys in clear
/// text: refused at start, unless `--service-control-allow-insecure-http`; loopback is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_key_server_off_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is never contacted: these configs need no key check.
    let off_loopback = ["--service-control-url", "http://192.0.2.1:8085"];
    let mut refused = no_backend_proxy(dir.path(), ECHO_CONFIG);
    refused.args(off_loopback);
    let out = cli::output(&mut refused);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not loopback"), "{stderr}");
    assert!(
        stderr.contains("--service-control-allow-insecure-http"),
        "{stderr}"
    );

    let backend = start_echo().await;
    let allowed = [
        &[
            &off_loopback[..],
            &["--service-control-allow-insecure-http"],
        ]
        .concat(),
        &["--service-control-url", "http://localhost:8085"][..],
        &["--service-control-url", "http://127.0.0.2:8085"][..],
        &["--service-control-url", "http://[::1]:8085"][..],
        &["--service-control-url", "https://keys.example.com"][..],
    ];
    for extra in allowed {
        let proxy = start_proxy(backend.addr(), dir.path(), extra);
        assert!(!proxy.process.addr.is_empty(), "{extra:?}");
    }
}

/// Issue 12 item 5: `--service-control-url` is repeatable. A key server that is down comes
/// first; the check fails over to the live one within `--service-control-check-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_key_servers_fail_over_to_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    let (key, _) = iam::Store::open(&store)
        .unwrap()
        .create_api_key("cli-project", None, 0)
        .unwrap();
    let live = testkit::KeyServer::start(&store).await;
    let down_addr = testkit::dead_addr();
    let down = format!("http://{down_addr}");
    let backend = start_echo().await;
    // Without its usage rules every method needs an API key.
    let config = ECHO_CONFIG.split("usage:").next().unwrap();
    let live_url = live.url();
    let proxy = start_proxy_with_config(
        backend.addr(),
        dir.path(),
        config,
        &[
            "--service-control-url",
            &down,
            "--service-control-url",
            &live_url,
            "--service-control-check-timeout",
            "1s",
        ],
    );
    let mut client =
        echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.process.addr))
            .await
            .unwrap();
    let mut request = tonic::Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let reply = client.unary(request).await.unwrap().into_inner();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .map(String::as_str),
        Some("cli-project")
    );
}

/// ESPv2's CORS flags: the others need `--cors-preset`; a preset without its origin refuses to
/// start; a running proxy answers a preflight with the flags' values, before any credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        cli::output(no_backend_proxy(dir.path(), ECHO_CONFIG).args(["--cors-allow-credentials"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cors-preset"), "{stderr}");

    let out = cli::output(
        no_backend_proxy(dir.path(), ECHO_CONFIG).args(["--cors-preset", "cors_with_regex"]),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--cors-allow-origin-regex cannot be empty when --cors-preset=cors_with_regex"
        ),
        "{stderr}"
    );

    let out = cli::output(no_backend_proxy(dir.path(), ECHO_CONFIG).args([
        "--cors-preset",
        "basic",
        "--cors-max-age",
        "400d",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 365d"));

    let backend = start_echo().await;
    let proxy = start_proxy(
        backend.addr(),
        dir.path(),
        &[
            "--cors-preset",
            "basic",
            "--cors-allow-origin",
            "https://app.example",
            "--cors-allow-credentials",
            "--cors-max-age",
            "10m",
        ],
    );
    let reply = testkit::servers::http1(
        proxy.process.addr.parse().unwrap(),
        "OPTIONS",
        "/esprit.echo.v1.Echo/Unary",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(reply.header("access-control-allow-credentials"), "true");
    assert_eq!(reply.header("access-control-max-age"), "600");
    assert_eq!(
        reply.header("access-control-allow-methods"),
        proxy::DEFAULT_ALLOW_METHODS
    );
}
