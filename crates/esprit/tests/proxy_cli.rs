//! `esprit proxy` as a user runs it: a real process, a config file on disk, JSON logs, and
//! SIGTERM draining an in-flight call before a clean exit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use echo::pb::EchoRequest;
use tokio::net::TcpListener;

const CONFIG: &str = "\
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
usage:
  rules:
  - selector: \"*\"
    allow_unregistered_calls: true
";

struct ProxyProcess {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<serde_json::Value>,
    /// The lines logged before "listening".
    startup: Vec<serde_json::Value>,
}

/// Starts `esprit proxy --log-format json` and learns its address from the "listening" line.
fn start_proxy(
    backend: std::net::SocketAddr,
    dir: &std::path::Path,
    extra: &[&str],
) -> ProxyProcess {
    start_proxy_with_config(backend, dir, CONFIG, extra)
}

/// [`start_proxy`] with another service config.
fn start_proxy_with_config(
    backend: std::net::SocketAddr,
    dir: &std::path::Path,
    config_text: &str,
    extra: &[&str],
) -> ProxyProcess {
    let config = dir.join("api_config.yaml");
    let descriptor = dir.join("echo.pb");
    std::fs::write(&config, config_text).unwrap();
    std::fs::write(&descriptor, echo::FILE_DESCRIPTOR_SET).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["proxy", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .arg("--service-config")
        .arg(&config)
        .arg("--descriptor")
        .arg(&descriptor)
        .arg("--backend")
        .arg(format!("grpc://{backend}"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    let mut startup = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("proxy never said it was listening");
        if line["message"] == "listening" {
            break line["listen"].as_str().unwrap().to_owned();
        }
        startup.push(line);
    };
    ProxyProcess {
        child,
        addr,
        lines,
        startup,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let backend =
        echo::RunningServer::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = start_proxy(backend.addr(), dir.path(), &["--drain-timeout", "5s"]);

    let mut client = echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.addr))
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

    let pid = proxy.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());

    let reply = call
        .await
        .unwrap()
        .expect("the in-flight call must complete during the drain");
    assert_eq!(&reply.into_inner().payload[..], b"in flight");
    let status = tokio::task::spawn_blocking(move || proxy.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "esprit proxy should exit 0 after draining"
    );

    // One access-log line for the call, with what operators need and never the token.
    let lines: Vec<serde_json::Value> = proxy.lines.try_iter().collect();
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

#[test]
fn an_invalid_config_refuses_to_start_with_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        CONFIG.replace("esprit.echo.v1.Echo", "esprit.echo.v1.Nope"),
    )
    .unwrap();
    let descriptor = dir.path().join("echo.pb");
    std::fs::write(&descriptor, echo::FILE_DESCRIPTOR_SET).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args([
            "proxy",
            "--backend",
            "grpc://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--service-config")
        .arg(&config)
        .arg("--descriptor")
        .arg(&descriptor)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apis[0].name"), "{stderr}");
}

#[test]
fn a_config_needing_checks_the_proxy_cannot_make_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // No usage rules: as in ESP, every method then needs an API key.
    let config = dir.path().join("keys.yaml");
    std::fs::write(&config, CONFIG.split("usage:").next().unwrap()).unwrap();
    let descriptor = dir.path().join("echo.pb");
    std::fs::write(&descriptor, echo::FILE_DESCRIPTOR_SET).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args([
            "proxy",
            "--backend",
            "grpc://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--service-config")
        .arg(&config)
        .arg("--descriptor")
        .arg(&descriptor)
        .output()
        .unwrap();
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
        "{CONFIG}quota:\n  limits:\n  - name: per-consumer\n    metric: read-calls\n    values: {{STANDARD: 10}}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quota.yaml");
    std::fs::write(&config, &with_quota).unwrap();
    let descriptor = dir.path().join("echo.pb");
    std::fs::write(&descriptor, echo::FILE_DESCRIPTOR_SET).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["proxy", "--backend", "grpc://127.0.0.1:1"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--service-config")
        .arg(&config)
        .arg("--descriptor")
        .arg(&descriptor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quota: esprit does not enforce this section"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-unenforced-config"), "{stderr}");

    let backend =
        echo::RunningServer::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut proxy = start_proxy_with_config(
        backend.addr(),
        dir.path(),
        &with_quota,
        &["--allow-unenforced-config"],
    );
    // The proxy serves; the ignored section was logged before it listened.
    let mut client = echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.addr))
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
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();
    let lines = proxy.startup;
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
