//! `--admin-listen` on the real binaries: `esprit proxy` and `esprit iam serve` each serve their
//! admin pages on a second, loopback address when given a bare port, and the pages parse with
//! Prometheus' own Python parser; `esprit proxy --health-check-grpc-backend` makes `/readyz`
//! follow the backend's `grpc.health.v1` status.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use testkit::cli;
use testkit::{BOOKSTORE_CONFIG, ECHO_CONFIG, MetricsPage};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

/// `GET path` over HTTP/1.1 (blocking): status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_proxy_serves_its_admin_pages_on_a_bare_port() {
    let backend = testkit::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = cli::proxy_command(
        ESPRIT,
        dir.path(),
        ECHO_CONFIG,
        echo::FILE_DESCRIPTOR_SET,
        backend.addr(),
    );
    command.args(["--log-format", "json", "--admin-listen", "0"]);
    // Blocking: the echo backend keeps running on this test's runtime meanwhile.
    tokio::task::spawn_blocking(move || {
        let mut child = KillOnDrop(
            command
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
        let mut line = String::new();
        // The "listening" line names both addresses.
        let (data, admin): (SocketAddr, SocketAddr) = loop {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["message"] == "listening" {
                break (
                    value["listen"].as_str().unwrap().parse().unwrap(),
                    value["admin"].as_str().unwrap().parse().unwrap(),
                );
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        // A bare port means loopback.
        assert!(admin.ip().is_loopback());
        assert_ne!(admin, data);
        let (status, text) = get(admin, "/metrics");
        assert_eq!(status, 200);
        let page = MetricsPage::parse(&text);
        assert_eq!(page.families["esprit_calls_in_flight"], "gauge");
        assert_eq!(page.count("esprit_config_info"), 1);
        let (status, config) = get(admin, "/config");
        assert_eq!(status, 200);
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        let sources = config["sources"].as_array().unwrap();
        assert!(
            sources[0].as_str().unwrap().ends_with("api_config.yaml"),
            "{config}"
        );
        assert!(
            sources[1].as_str().unwrap().ends_with("descriptors.pb"),
            "{config}"
        );
        assert_eq!(get(admin, "/readyz").0, 200);
        assert_ne!(
            get(data, "/metrics").0,
            200,
            "the data listener serves no admin page"
        );
        drop(child);
    })
    .await
    .unwrap();
}

#[test]
fn iam_serve_counts_requests_by_route_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    let mut server = cli::iam_serve(
        ESPRIT,
        &store,
        &["--admin-listen", "0", "--log-format", "json"],
    );
    let stderr = server.take_stderr();
    let lines = cli::json_lines(stderr);
    let admin: SocketAddr = loop {
        let value = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("no 'admin listener' log line");
        if value["message"] == "admin listener" {
            break value["admin"].as_str().unwrap().parse().unwrap();
        }
    };
    assert!(admin.ip().is_loopback());
    let data: SocketAddr = server.addr.trim_start_matches("http://").parse().unwrap();

    assert_eq!(get(data, "/nope").0, 404);
    assert_eq!(
        get(data, "/service_accounts/v1/jwk/nobody@example.com").0,
        404
    );
    assert_eq!(
        get(data, "/service_accounts/v1/jwk/other@example.com").0,
        404
    );

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let page = MetricsPage::parse(&text);
    let requests = |route: &str, status: &str| {
        page.sum(
            "esprit_iam_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("not_found", "404"), 1.0);
    assert_eq!(requests("jwks", "404"), 2.0);
    assert_eq!(page.sum("esprit_iam_requests_total", &[]), 3.0);
    assert_eq!(
        page.sum(
            "esprit_iam_request_duration_seconds_count",
            &[("route", "jwks")]
        ),
        2.0
    );
    assert!(page.sum("process_open_fds", &[]) > 0.0);
    assert_eq!(get(admin, "/healthz").0, 200);
    assert_eq!(get(admin, "/readyz").0, 200);
    drop(server);
}

/// `esprit proxy --admin-listen 0 --health-check-grpc-backend` in front of `backend`: the
/// process and its admin address.
fn proxy_checking_health(
    dir: &std::path::Path,
    config: &str,
    descriptors: &[u8],
    backend: SocketAddr,
) -> (cli::Listening, SocketAddr) {
    let mut command = cli::proxy_command(ESPRIT, dir, config, descriptors, backend);
    command.args([
        "--log-format",
        "json",
        "--admin-listen",
        "0",
        "--health-check-grpc-backend",
        "--health-check-grpc-backend-interval",
        "100ms",
    ]);
    let mut proxy = cli::Listening::json_log(command);
    proxy.discard_output();
    let admin = proxy.listening["admin"].as_str().unwrap().parse().unwrap();
    (proxy, admin)
}

const WAIT: Duration = Duration::from_secs(20);

/// Through the binary: `/readyz` is 200 while the backend reports SERVING, 503 while it
/// reports NOT_SERVING, and 503 once the backend is down.
#[tokio::test]
async fn readyz_follows_the_backends_health_through_the_binary() {
    // A backend whose health the test sets.
    let (reporter, health) = tonic_health::server::health_reporter();
    let backend = testkit::serve_router(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(echo::echo_server()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || proxy_checking_health(&dir, ECHO_CONFIG, echo::FILE_DESCRIPTOR_SET, backend)
    })
    .await
    .unwrap();
    testkit::wait_for_status(admin, "/readyz", 200, WAIT).await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let body = testkit::wait_for_status(admin, "/readyz", 503, WAIT).await;
    assert!(body.contains("NOT_SERVING"), "{body}");
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    testkit::wait_for_status(admin, "/readyz", 200, WAIT).await;
    drop(proxy);

    // The Bookstore (which serves grpc.health.v1 itself), then stopped.
    let bookstore = testkit::start_bookstore().await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        let addr = bookstore.addr();
        move || proxy_checking_health(&dir, BOOKSTORE_CONFIG, bookstore::FILE_DESCRIPTOR_SET, addr)
    })
    .await
    .unwrap();
    testkit::wait_for_status(admin, "/readyz", 200, WAIT).await;
    bookstore.stop().await.unwrap();
    let body = testkit::wait_for_status(admin, "/readyz", 503, WAIT).await;
    assert!(body.contains("backend"), "{body}");
    drop(proxy);
}
