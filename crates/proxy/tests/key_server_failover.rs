//! Several key servers (`--service-control-url` repeated), end to end: checks spread over the
//! replicas, fail over on connect errors, timeouts and 5xx within the check's budget, never on a
//! 4xx, and a failing replica is ejected and readmitted; all seen in `/metrics`. Real key servers
//! on one store, a scripted peer answering 500 or 403 (`keysets::test_server`), a listener that
//! never answers, the echo backend and real clients; no fixed port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use echo::pb::EchoRequest;
use keysets::test_server::{KeyServer as ScriptedServer, Reply};
use testkit::MetricsPage;
use tonic::{Code, Request};

/// Every method of the echo API needs an API key (ESP's default).
const CONFIG: &str = "
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
";
const CHECK_PATH: &str = "/v1/services/echo.example.com:check";
const INVALID: &str = "API key not valid. Please pass a valid API key.";
const UNAVAILABLE: &str = "API key could not be checked: the key service is unavailable.";
const VALID: &str = r#"{"valid":true,"consumer_project":"scripted"}"#;

/// One key store that several key servers share.
struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iam.db");
        iam::Store::open(&path).unwrap();
        Self { _dir: dir, path }
    }

    /// A new key of `project` (each call a key no cache has seen).
    fn key(&self, project: &str) -> String {
        iam::Store::open(&self.path)
            .unwrap()
            .create_api_key(project, None, 0)
            .unwrap()
            .0
    }
}

/// A proxy with the admin listener in front of the echo backend, asking `urls`.
async fn proxy(
    urls: Vec<String>,
    tune: impl FnOnce(&mut proxy::ProxySettings),
) -> (echo::RunningServer, RunningProxy) {
    let backend = start_echo().await;
    let mut settings = settings_with_admin(backend.addr());
    settings.api_keys.service_control_urls = urls;
    tune(&mut settings);
    let proxy = RunningProxy::start(&echo_service(CONFIG), settings).await;
    (backend, proxy)
}

/// One unary call with `x-api-key: key`: the consumer project the backend received, or the
/// status.
async fn call(proxy: &RunningProxy, key: &str) -> Result<Option<String>, tonic::Status> {
    let mut client = echo_client(proxy.url()).await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let reply = client.unary(request).await?.into_inner();
    Ok(reply
        .metadata
        .get("x-endpoint-api-consumer-project")
        .cloned())
}

/// [`call`], and how long it took.
async fn timed_call(
    proxy: &RunningProxy,
    key: &str,
) -> (Result<Option<String>, tonic::Status>, Duration) {
    let started = Instant::now();
    let result = call(proxy, key).await;
    (result, started.elapsed())
}

/// A peer that completes TCP handshakes (the listen backlog) and never reads or answers.
async fn black_hole() -> (tokio::net::TcpListener, String) {
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// `http://127.0.0.1:PORT` → the replica label, `127.0.0.1:PORT`.
fn label(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// `/metrics`, checked by Prometheus' own parser.
async fn metrics(proxy: &RunningProxy) -> MetricsPage {
    let (status, text) = http_get(proxy.admin(), "/metrics").await;
    assert_eq!(status, 200);
    tokio::task::spawn_blocking(move || MetricsPage::parse(&text))
        .await
        .unwrap()
}

fn attempts(page: &MetricsPage, url: &str, outcome: &str) -> f64 {
    page.sum(
        "esprit_api_key_server_attempts_total",
        &[("replica", label(url)), ("outcome", outcome)],
    )
}

fn ejections(page: &MetricsPage, url: &str) -> f64 {
    page.sum(
        "esprit_api_key_server_ejections_total",
        &[("replica", label(url))],
    )
}

fn ejected(page: &MetricsPage) -> f64 {
    page.sum("esprit_api_key_servers_ejected", &[])
}

/// Two key servers on one store: checks alternate between them; one is stopped and every
/// call still succeeds (each check that asks the dead one first fails over to the live one),
/// and after three failures the dead one is ejected and no longer asked.
#[tokio::test]
async fn one_of_two_key_servers_stops_and_no_call_fails() {
    let store = Store::new();
    let first = KeyServer::start(&store.path).await;
    let second = KeyServer::start(&store.path).await;
    let (first_url, second_url) = (first.url(), second.url());
    let (_backend, proxy) = proxy(vec![first_url.clone(), second_url.clone()], |_| {}).await;

    for _ in 0..4 {
        let project = call(&proxy, &store.key("shared")).await.unwrap();
        assert_eq!(project.as_deref(), Some("shared"));
    }
    let page = metrics(&proxy).await;
    assert_eq!(attempts(&page, &first_url, "answered"), 2.0);
    assert_eq!(attempts(&page, &second_url, "answered"), 2.0);

    first.stop().await;
    for i in 0..8 {
        let project = call(&proxy, &store.key("shared")).await;
        assert_eq!(
            project.unwrap().as_deref(),
            Some("shared"),
            "call {i} after the stop"
        );
    }
    let page = metrics(&proxy).await;
    let failed: f64 = [
        "connect_error",
        "transport_error",
        "timeout",
        "server_error",
    ]
    .iter()
    .map(|outcome| attempts(&page, &first_url, outcome))
    .sum();
    // Checks 1, 3 and 5 after the stop asked the stopped server first; the third failure
    // ejected it, so checks 7… asked only the live one.
    assert_eq!(failed, 3.0);
    assert_eq!(attempts(&page, &first_url, "answered"), 2.0);
    assert_eq!(attempts(&page, &second_url, "answered"), 10.0);
    assert_eq!(ejections(&page, &first_url), 1.0);
    assert_eq!(ejections(&page, &second_url), 0.0);
    assert_eq!(ejected(&page), 1.0);
}

/// A replica answering 500 is failed over (the call succeeds through the other), ejected after
/// three 500s, left alone while ejected, and readmitted when its back-off (10 s by the proxy's
/// injected clock) is over.
#[tokio::test]
async fn a_replica_answering_500_is_failed_over_ejected_and_readmitted() {
    let store = Store::new();
    let broken = ScriptedServer::start().await.unwrap();
    broken.set(CHECK_PATH, Reply::status(500));
    let broken_url = format!("http://{}", broken.addr());
    let healthy = KeyServer::start(&store.path).await;
    let clock = clock::ManualClock::starting_now();
    let (_backend, proxy) = proxy(vec![broken_url.clone(), healthy.url()], |s| {
        s.clock = clock.shared();
    })
    .await;

    for i in 0..6 {
        let project = call(&proxy, &store.key("p-project")).await;
        assert_eq!(project.unwrap().as_deref(), Some("p-project"), "call {i}");
    }
    // Checks 1, 3 and 5 started with the broken replica.
    assert_eq!(broken.hits(CHECK_PATH), 3);
    let page = metrics(&proxy).await;
    assert_eq!(attempts(&page, &broken_url, "server_error"), 3.0);
    assert_eq!(attempts(&page, &healthy.url(), "answered"), 6.0);
    assert_eq!(ejections(&page, &broken_url), 1.0);
    assert_eq!(ejected(&page), 1.0);

    // Ejected: not asked at all.
    for _ in 0..4 {
        call(&proxy, &store.key("p-project")).await.unwrap();
    }
    assert_eq!(broken.hits(CHECK_PATH), 3);

    // 10 s later (by the injected clock) it is readmitted, and asked again in its turn.
    broken.set(CHECK_PATH, Reply::json(VALID));
    clock.advance(Duration::from_millis(9_900));
    assert_eq!(ejected(&metrics(&proxy).await), 1.0);
    clock.advance(Duration::from_millis(100));
    assert_eq!(ejected(&metrics(&proxy).await), 0.0);
    let mut projects = Vec::new();
    for _ in 0..2 {
        projects.push(
            call(&proxy, &store.key("p-project"))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(broken.hits(CHECK_PATH), 4);
    assert!(projects.contains(&"scripted".to_owned()), "{projects:?}");
}

/// A replica that accepts connections and never answers costs a check only its share of the
/// budget (half of it, with two replicas): the other replica answers within what is left.
#[tokio::test]
async fn a_black_holed_replica_costs_only_its_share_of_the_budget() {
    let store = Store::new();
    let (_hole, hole_url) = black_hole().await;
    let healthy = KeyServer::start(&store.path).await;
    let (_backend, proxy) = proxy(vec![hole_url.clone(), healthy.url()], |s| {
        s.api_keys.check_timeout = Duration::from_secs(2);
    })
    .await;

    let started = Instant::now();
    let project = call(&proxy, &store.key("p-project")).await;
    let took = started.elapsed();
    assert_eq!(project.unwrap().as_deref(), Some("p-project"));
    // The black hole was asked first and given up on after its share (1 s).
    assert!(took >= Duration::from_millis(950), "{took:?}");
    let page = metrics(&proxy).await;
    assert_eq!(attempts(&page, &hole_url, "timeout"), 1.0);
    assert_eq!(attempts(&page, &healthy.url(), "answered"), 1.0);

    // The next check starts with the healthy replica: no wait.
    call(&proxy, &store.key("p-project")).await.unwrap();
    assert_eq!(attempts(&metrics(&proxy).await, &hole_url, "timeout"), 1.0);
}

/// Both replicas down (here: both black holes, the slowest way down): the call fails closed,
/// or opens with fail-open, once the check's budget is spent: not the sum of two attempts'.
#[tokio::test]
async fn both_replicas_down_fails_closed_or_open_within_the_budget() {
    const BUDGET: Duration = Duration::from_secs(2);
    let (_a, a) = black_hole().await;
    let (_b, b) = black_hole().await;
    let urls = vec![a.clone(), b.clone()];
    let (_closed_backend, closed) =
        proxy(urls.clone(), |s| s.api_keys.check_timeout = BUDGET).await;
    let (_open_backend, open) = proxy(urls, |s| {
        s.api_keys.check_timeout = BUDGET;
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;

    let ((refused, closed_took), (let_through, open_took)) = tokio::join!(
        timed_call(&closed, "AIzaNoReplicaAnswers"),
        timed_call(&open, "AIzaNoReplicaAnswers")
    );
    let status = refused.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), UNAVAILABLE);
    assert_eq!(
        let_through.unwrap(),
        None,
        "fail-open vouches for no project"
    );
    for took in [closed_took, open_took] {
        // Both replicas were asked (a share each), and the whole check stayed in its budget:
        // asking each with the whole budget would take twice as long.
        assert!(took >= BUDGET - Duration::from_millis(100), "{took:?}");
        assert!(took < BUDGET + Duration::from_millis(1_500), "{took:?}");
    }
    for proxy in [&closed, &open] {
        let page = metrics(proxy).await;
        assert_eq!(attempts(&page, &a, "timeout"), 1.0);
        assert_eq!(attempts(&page, &b, "timeout"), 1.0);
    }
}

/// A 4xx is an answer, not a failure: never asked of another replica, and never a reason to
/// eject. A 400 or 429 means the key is invalid; a 401 or 403 refuses the proxy's own
/// credentials, so the call fails closed (`UNAVAILABLE`, never cached), as
/// `proxy/tests/check_auth.rs` shows with a real key server.
#[tokio::test]
async fn a_4xx_is_an_answer_and_is_not_retried() {
    let first = ScriptedServer::start().await.unwrap();
    let second = ScriptedServer::start().await.unwrap();
    let urls: Vec<String> = [&first, &second]
        .iter()
        .map(|s| format!("http://{}", s.addr()))
        .collect();
    let (_backend, proxy) = proxy(urls.clone(), |_| {}).await;
    let statuses = [403, 401, 400, 403, 429, 403];
    for (i, status) in statuses.into_iter().enumerate() {
        first.set(CHECK_PATH, Reply::status(status));
        second.set(CHECK_PATH, Reply::status(status));
        let refused = call(&proxy, &format!("AIzaRefused{i}")).await.unwrap_err();
        if matches!(status, 401 | 403) {
            assert_eq!(refused.code(), Code::Unavailable, "{status}");
        } else {
            assert_eq!(refused.code(), Code::InvalidArgument, "{status}");
            assert_eq!(refused.message(), INVALID, "{status}");
        }
        assert_eq!(
            first.hits(CHECK_PATH) + second.hits(CHECK_PATH),
            i + 1,
            "HTTP {status} was retried"
        );
    }
    let page = metrics(&proxy).await;
    for url in &urls {
        assert_eq!(attempts(&page, url, "refused"), 3.0);
        assert_eq!(ejections(&page, url), 0.0);
    }
    assert_eq!(ejected(&page), 0.0);
}

/// Every URL is checked at start as a single one is: a plain-http one off loopback among
/// several is refused, and so is the same URL twice.
#[tokio::test]
async fn every_url_is_checked_at_start() {
    let backend = start_echo().await;
    for (urls, want) in [
        (
            vec!["http://127.0.0.1:9", "http://192.0.2.1:8085"],
            "--service-control-allow-insecure-http",
        ),
        (
            vec!["http://127.0.0.1:9", "http://127.0.0.1:9/"],
            "given twice",
        ),
    ] {
        let mut settings = settings(backend.addr());
        settings.api_keys.service_control_urls = urls.iter().map(|u| u.to_string()).collect();
        let err = match proxy::Proxy::bind(&echo_service(CONFIG), settings).await {
            Ok(_) => panic!("{urls:?} accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(want), "{urls:?}: {err}");
    }
}
