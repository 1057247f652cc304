//! `esprit proxy --otlp-endpoint` as a user runs it: the access log names each call's trace
//! (JSON field `trace_id`, and `trace_id=` in the text format), the spans reach an OTLP/HTTP
//! receiver started by the test (flushed on SIGTERM), and the tracing flags are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use echo::pb::EchoRequest;
use testkit::cli::{self, Listening};
use testkit::otlp::OtlpReceiver;
use testkit::{ECHO_CONFIG, start_echo};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const WAIT: Duration = Duration::from_secs(20);

async fn call(addr: &str, traceparent: Option<&str>) {
    let mut client = echo::pb::echo_client::EchoClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(EchoRequest::default());
    if let Some(value) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", value.parse().unwrap());
    }
    client.unary(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_carry_the_trace_id_and_sigterm_flushes_the_spans() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = cli::proxy_command(
        env!("CARGO_BIN_EXE_esprit"),
        dir.path(),
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend.addr(),
    );
    command
        .args(["--log-format", "json", "--otlp-endpoint", &receiver.url()])
        .args(["--tracing-sample-rate", "1"])
        .env("RUST_LOG", "info");
    let mut proxy = Listening::json_log(command);
    let lines = proxy.json_lines();
    call(&proxy.addr, Some(TRACEPARENT)).await;
    call(&proxy.addr, None).await;

    let mut trace_ids = Vec::new();
    let deadline = Instant::now() + WAIT;
    while trace_ids.len() < 2 {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("access lines missing");
        if line["target"] == "esprit::access" {
            trace_ids.push(line["trace_id"].as_str().expect("no trace_id").to_owned());
        }
    }
    assert_eq!(trace_ids[0], TRACE_ID, "the caller's trace");
    assert_eq!(trace_ids[1].len(), 32, "a new trace: {}", trace_ids[1]);
    assert_ne!(trace_ids[1], TRACE_ID);

    // SIGTERM: drain, then the queued spans are exported before the exit.
    let status = tokio::task::spawn_blocking(move || proxy.sigterm_and_wait().0)
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let spans = receiver.wait_for(2, WAIT).await;
    for trace_id in &trace_ids {
        let span = spans
            .iter()
            .find(|s| &s.trace_id() == trace_id)
            .unwrap_or_else(|| panic!("no span of {trace_id}: {spans:?}"));
        assert_eq!(span.service_name.as_deref(), Some("echo.example.com"));
    }
}

/// A collector that cannot be reached does not fail calls; the failed export is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_is_logged() {
    let backend = start_echo().await;
    let nobody = testkit::dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let mut command = cli::proxy_command(
        env!("CARGO_BIN_EXE_esprit"),
        dir.path(),
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend.addr(),
    );
    command
        .args(["--log-format", "json"])
        .arg("--otlp-endpoint")
        .arg(format!("http://{nobody}"))
        .env("RUST_LOG", "info");
    let proxy = Listening::json_log(command);
    call(&proxy.addr, Some(TRACEPARENT)).await;
    // The flush at SIGTERM tries to export the span, and fails.
    let (status, logs) = tokio::task::spawn_blocking(move || proxy.sigterm_and_wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let failed = logs.lines().any(|line| {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        line["level"] == "ERROR" && line["name"] == "BatchSpanProcessor.ExportError"
    });
    assert!(failed, "{logs}");
}

/// The text format: `trace_id=…` on the access line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_access_lines_carry_the_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = cli::proxy_command(
        env!("CARGO_BIN_EXE_esprit"),
        dir.path(),
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend.addr(),
    )
    .args(["--log-format", "text", "--otlp-endpoint", &receiver.url()])
    .env("RUST_LOG", "info")
    .env_remove("NO_COLOR")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {what} line"));
            if line.contains(what) {
                return line;
            }
        }
    };
    let listening = next(" listening ");
    let addr = listening
        .split_whitespace()
        .find_map(|field| field.strip_prefix("listen="))
        .expect("no listen= field")
        .to_owned();
    // The default sample rate (0.001) does not matter: the caller's flag decides.
    call(&addr, Some(TRACEPARENT)).await;
    let line = next("esprit::access");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    // stderr is a pipe, not a terminal: no colour codes, in any line.
    assert!(
        !line.contains('\u{1b}') && !listening.contains('\u{1b}'),
        "{line:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tracing_flags_are_checked() {
    let run = |args: &[&str]| {
        cli::command(env!("CARGO_BIN_EXE_esprit"))
            .args(["proxy", "--service-config", "x.yaml"])
            .args(["--backend", "grpc://127.0.0.1:1"])
            .args(args)
            .output()
            .unwrap()
    };
    for (args, says) in [
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--tracing-sample-rate",
                "1.5",
            ][..],
            "0.0 to 1.0",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--tracing-sample-rate=-0.1",
            ][..],
            "--tracing-sample-rate",
        ),
        (
            &[
                "--otlp-endpoint",
                "http://127.0.0.1:4318",
                "--tracing-sample-rate",
                "NaN",
            ][..],
            "0.0 to 1.0",
        ),
        (&["--tracing-sample-rate", "0.5"][..], "--otlp-endpoint"),
        (
            &["--otlp-endpoint", "grpc://collector:4317"][..],
            "http:// or https://",
        ),
        (
            &["--otlp-endpoint", "collector:4318"][..],
            "http:// or https://",
        ),
    ] {
        let out = run(args);
        let stderr = cli::assert_fails(&format!("{args:?}"), &out, 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
