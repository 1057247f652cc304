//! The admin listener end to end: `/metrics` parsed by Prometheus' own Python parser after a
//! known sequence of calls, label cardinality under random paths, `/readyz` following the
//! backend's gRPC health and the key sets, `/healthz`, `/config`, and no admin listener unless
//! asked. Real sockets throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use echo::pb::EchoRequest;
use http_body_util::{BodyExt as _, Full};
use jose::GeneratedKey;
use keysets::test_server::{KeyServer as JwksServer, Reply, jwks};
use serde_json::json;
use service_config::ServiceConfig;
use testkit::MetricsPage;
use tonic::{Code, Request};
use tonic_health::ServingStatus;

const ISSUER: &str = "client@consumer-project.iam.gserviceaccount.com";
const SERVICE: &str = "echo.example.com";
const UNARY: &str = "esprit.echo.v1.Echo.Unary";
const CLIENT_STREAM: &str = "esprit.echo.v1.Echo.ClientStream";
const WAIT: Duration = Duration::from_secs(20);

const SERVER_STREAM: &str = "esprit.echo.v1.Echo.ServerStream";
/// An account of the issuer's project that `consumer`'s tokens never name.
const OTHER_CALLER: &str = "someone-else@consumer-project.iam.gserviceaccount.com";

/// Unary needs a JWT of `consumer`; ServerStream too, from a caller `consumer`'s tokens never
/// name; ClientStream needs an API key; the rest (Bidi) are open.
fn config(jwks_uri: &str) -> ServiceConfig {
    echo_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: consumer
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  rules:
  - selector: {UNARY}
    requirements:
    - provider_id: consumer
  - selector: {SERVER_STREAM}
    requirements:
    - provider_id: consumer
      x_esprit_allowed_callers: [{OTHER_CALLER}]
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
  - selector: {CLIENT_STREAM}
    allow_unregistered_calls: false
"#
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(key: &GeneratedKey, aud: &str) -> String {
    mint_with(key, "k1", aud)
}

fn mint_with(key: &GeneratedKey, kid: &str, aud: &str) -> String {
    let now = now();
    sign(
        key,
        kid,
        json!({"iss": ISSUER, "sub": "1", "aud": aud, "iat": now, "exp": now + 3600}),
    )
}

fn sign(key: &GeneratedKey, kid: &str, claims: serde_json::Value) -> String {
    key.signer()
        .unwrap()
        .sign_jwt(Some(kid), key.algorithm, &claims)
        .unwrap()
}

async fn unary(url: String, token: Option<&str>) -> Code {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest::default());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match client.unary(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn client_stream(url: String, key: &str) -> Code {
    let mut client = echo_client(url).await;
    let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    match client.client_stream(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A raw gRPC call to `path` (any path, defined or not); returns the HTTP status.
async fn raw_call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    path: &str,
) -> u16 {
    let request = http::Request::post(format!("http://echo{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// The page once every call has finished (none in flight), then parsed by prometheus_client.
async fn settled_metrics(admin: std::net::SocketAddr) -> (String, MetricsPage) {
    let text = wait_until_text(admin, |text| text.contains("\nesprit_calls_in_flight 0\n")).await;
    let parsed = {
        let text = text.clone();
        tokio::task::spawn_blocking(move || MetricsPage::parse(&text))
            .await
            .unwrap()
    };
    (text, parsed)
}

async fn wait_until_text(admin: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, text) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn calls(page: &MetricsPage, method: &str, code: Code, http_status: &str) -> f64 {
    page.sum(
        "esprit_calls_total",
        &[
            ("method", method),
            ("grpc_code", proxy::code_name(code)),
            ("http_status", http_status),
        ],
    )
}

async fn server_stream(url: String, token: &str) -> Code {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match client.server_stream(request).await {
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Code::Ok,
                    Err(status) => return status.code(),
                }
            }
        }
        Err(status) => status.code(),
    }
}

fn auth(page: &MetricsPage, provider: &str, result: &str) -> f64 {
    page.sum(
        "esprit_jwt_authentications_total",
        &[("provider", provider), ("result", result)],
    )
}

/// A rejection by each JWT check and each API-key outcome, accepted calls, an unknown method
/// and a call held open, each counted exactly; every failure after the issuer's check is
/// counted under the provider whose issuer the token named.
#[tokio::test]
async fn metrics_count_a_known_sequence_of_calls() {
    let jwks_server = JwksServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    jwks_server.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let iam_dir = tempfile::tempdir().unwrap();
    let store = iam_dir.path().join("iam.db");
    iam::Store::open(&store).unwrap();
    let key_server = testkit::KeyServer::start(&store).await;
    let (api_key, _) = iam::Store::open(&store)
        .unwrap()
        .create_api_key("consumer-project", None, 0)
        .unwrap();
    let backend = start_echo().await;
    let mut settings = settings_with_admin(backend.addr());
    settings.api_keys.service_control_urls = vec![key_server.url()];
    let started = now();
    let proxy = RunningProxy::start(&config(&jwks_server.url("/jwks")), settings).await;
    let url = proxy.url();
    // The keys are fetched (else the first call's refetch would be one more cache lookup).
    wait_for_status(proxy.admin(), "/readyz", 200, WAIT).await;

    let good = mint(&key, SERVICE);
    // accepted twice (the second from the verified-token cache)
    assert_eq!(unary(url.clone(), Some(&good)).await, Code::Ok);
    assert_eq!(unary(url.clone(), Some(&good)).await, Code::Ok);
    // extract: no token
    assert_eq!(unary(url.clone(), None).await, Code::Unauthenticated);
    // parse: not a JWT
    assert_eq!(
        unary(url.clone(), Some("not-a-jwt")).await,
        Code::Unauthenticated
    );
    // issuer: no provider has it
    let t = now();
    let stranger_iss = json!({"iss": "stranger@other-project.iam.gserviceaccount.com",
        "sub": "1", "aud": SERVICE, "iat": t, "exp": t + 3600});
    assert_eq!(
        unary(url.clone(), Some(&sign(&key, "k1", stranger_iss))).await,
        Code::Unauthenticated
    );
    // time: expired an hour ago
    let expired =
        json!({"iss": ISSUER, "sub": "1", "aud": SERVICE, "iat": t - 7200, "exp": t - 3600});
    assert_eq!(
        unary(url.clone(), Some(&sign(&key, "k1", expired))).await,
        Code::Unauthenticated
    );
    // audience
    let wrong_aud = mint(&key, "other.example.com");
    assert_eq!(
        unary(url.clone(), Some(&wrong_aud)).await,
        Code::PermissionDenied
    );
    // key: a kid the key set does not have: one refetch, then refused at the key check
    let stranger = jose::generate_rsa_2048().unwrap();
    let unknown_kid = mint_with(&stranger, "k2", SERVICE);
    assert_eq!(
        unary(url.clone(), Some(&unknown_kid)).await,
        Code::Unauthenticated
    );
    // signature: the known kid, signed by another key of the same algorithm
    let forged = mint_with(&stranger, "k1", SERVICE);
    assert_eq!(
        unary(url.clone(), Some(&forged)).await,
        Code::Unauthenticated
    );
    // caller: a valid token (from the cache) of an account the rule does not list
    assert_eq!(
        server_stream(url.clone(), &good).await,
        Code::PermissionDenied
    );
    // API key: missing, invalid, then valid twice (the second from the cache)
    let missing = {
        let mut client = echo_client(url.clone()).await;
        let request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
        client.client_stream(request).await.unwrap_err().code()
    };
    assert_eq!(missing, Code::Unauthenticated);
    let invalid = client_stream(url.clone(), "not-a-key").await;
    assert_ne!(invalid, Code::Ok);
    assert_eq!(client_stream(url.clone(), &api_key).await, Code::Ok);
    assert_eq!(client_stream(url.clone(), &api_key).await, Code::Ok);
    // unknown method
    let mut sender = h2c::<Full<Bytes>>(proxy.addr).await;
    let undefined_status = raw_call(&mut sender, "/esprit.echo.v1.Echo/Nope").await;

    // A call held open (a Bidi stream that has answered once) is in flight.
    let mut client = echo_client(url.clone()).await;
    let (held, receiver) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    held.send(EchoRequest::default()).await.unwrap();
    let mut stream = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let text = wait_until_text(proxy.admin(), |text| {
        text.contains("\nesprit_calls_in_flight 1\n")
    })
    .await;
    let page = tokio::task::spawn_blocking(move || MetricsPage::parse(&text))
        .await
        .unwrap();
    assert_eq!(page.families["esprit_calls_in_flight"], "gauge");
    assert_eq!(page.sum("esprit_calls_in_flight", &[]), 1.0);
    drop(held);
    assert!(stream.message().await.unwrap().is_none());

    let (_, page) = settled_metrics(proxy.admin()).await;
    assert_eq!(page.families["esprit_calls"], "counter");
    assert_eq!(page.families["esprit_call_duration_seconds"], "histogram");
    assert_eq!(calls(&page, UNARY, Code::Ok, "200"), 2.0);
    // missing, malformed, issuer, expired, unknown kid, forged
    assert_eq!(calls(&page, UNARY, Code::Unauthenticated, "200"), 6.0);
    assert_eq!(calls(&page, UNARY, Code::PermissionDenied, "200"), 1.0);
    assert_eq!(
        calls(&page, SERVER_STREAM, Code::PermissionDenied, "200"),
        1.0
    );
    assert_eq!(
        calls(&page, CLIENT_STREAM, Code::Unauthenticated, "200"),
        1.0
    );
    assert_eq!(calls(&page, CLIENT_STREAM, invalid, "200"), 1.0);
    assert_eq!(calls(&page, CLIENT_STREAM, Code::Ok, "200"), 2.0);
    assert_eq!(
        calls(&page, "esprit.echo.v1.Echo.Bidi", Code::Ok, "200"),
        1.0
    );
    assert_eq!(
        page.sum(
            "esprit_calls_total",
            &[
                ("method", "undefined"),
                ("http_status", &undefined_status.to_string())
            ]
        ),
        1.0
    );
    assert_eq!(page.sum("esprit_calls_total", &[]), 16.0);
    assert_eq!(
        page.sum("esprit_call_duration_seconds_count", &[("method", UNARY)]),
        9.0
    );
    assert_eq!(page.sum("esprit_calls_in_flight", &[]), 0.0);

    // Each check once; from the time check on, under the provider the issuer named.
    assert_eq!(auth(&page, "consumer", "allowed"), 2.0);
    assert_eq!(auth(&page, "none", "extract"), 1.0);
    assert_eq!(auth(&page, "none", "parse"), 1.0);
    assert_eq!(auth(&page, "none", "issuer"), 1.0);
    for check in ["time", "audience", "key", "signature", "caller"] {
        assert_eq!(auth(&page, "consumer", check), 1.0, "{check}");
        assert_eq!(auth(&page, "none", check), 0.0, "{check}");
    }
    assert_eq!(page.sum("esprit_jwt_authentications_total", &[]), 10.0);
    // One lookup per decision with a token: the good token twice (a miss, then a hit), the
    // caller's check (a hit), the malformed, stranger, expired, wrong-audience and forged
    // tokens once, the unknown kid twice (before and after its refetch); a missing token is no
    // lookup.
    assert_eq!(page.sum("esprit_jwt_cache_hits_total", &[]), 2.0);
    assert_eq!(page.sum("esprit_jwt_cache_misses_total", &[]), 8.0);
    assert_eq!(
        page.sum(
            "esprit_jwks_unknown_kid_refetches_total",
            &[("provider", "consumer"), ("outcome", "fetched")]
        ),
        1.0
    );
    assert_eq!(
        page.sum("esprit_jwks_unknown_kid_refetches_total", &[]),
        1.0
    );

    let api = |outcome: &str| page.sum("esprit_api_key_checks_total", &[("outcome", outcome)]);
    assert_eq!(api("missing"), 1.0);
    assert_eq!(api("invalid"), 1.0);
    assert_eq!(api("valid"), 2.0);
    assert_eq!(page.sum("esprit_api_key_checks_total", &[]), 4.0);
    assert_eq!(page.sum("esprit_api_key_cache_hits_total", &[]), 1.0);
    assert_eq!(page.sum("esprit_api_key_cache_misses_total", &[]), 2.0);
    assert_eq!(
        page.sum("esprit_api_key_server_duration_seconds_count", &[]),
        2.0
    );

    let provider = [("provider", "consumer")];
    assert!(page.sum("esprit_jwks_fetches_total", &provider) >= 2.0);
    assert_eq!(page.sum("esprit_jwks_fetch_failures_total", &provider), 0.0);
    assert_eq!(page.sum("esprit_jwks_keys", &provider), 1.0);
    let fetched_at = page.sum("esprit_jwks_last_success_timestamp_seconds", &provider);
    assert!((fetched_at - now() as f64).abs() < 600.0, "{fetched_at}");
    assert!(page.sum("esprit_connections_open", &[]) >= 1.0);
    assert_eq!(page.sum("esprit_backend_connect_failures_total", &[]), 0.0);

    let config_id = config(&jwks_server.url("/jwks")).id().as_str().to_owned();
    assert_eq!(
        page.sum("esprit_config_info", &[("config_id", &config_id)]),
        1.0
    );
    assert_eq!(
        page.families["esprit_config_loaded_timestamp_seconds"],
        "gauge"
    );
    assert_eq!(page.count("esprit_config_loaded_timestamp_seconds"), 1);
    let loaded_at = page.sum("esprit_config_loaded_timestamp_seconds", &[]);
    assert!(
        loaded_at >= started as f64 && loaded_at <= now() as f64 + 1.0,
        "loaded at {loaded_at}, started at {started}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(page.count(name) == 1, "{name} missing");
    }
    assert!(page.sum("process_resident_memory_bytes", &[]) > 0.0);
    drop(key_server);
}

/// Two providers with one issuer: a failure is counted under the provider whose checks got
/// furthest, the first in the method's requirements on a tie (the one whose error the caller
/// gets); an acceptance under the provider that validated the token.
#[tokio::test]
async fn providers_sharing_an_issuer_count_under_the_one_that_got_furthest() {
    let jwks_server = JwksServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    jwks_server.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let jwks_uri = jwks_server.url("/jwks");
    let config = echo_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: first
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  - id: second
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  rules:
  - selector: {UNARY}
    requirements:
    - provider_id: first
      audiences: a.example.com
    - provider_id: second
      audiences: b.example.com
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    ));
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&config, settings_with_admin(backend.addr())).await;
    wait_for_status(proxy.admin(), "/readyz", 200, WAIT).await;
    let url = proxy.url();

    // Neither audience: both fail at the audience check; the first requirement's provider.
    let neither = mint(&key, "c.example.com");
    assert_eq!(
        unary(url.clone(), Some(&neither)).await,
        Code::PermissionDenied
    );
    // The second's audience with a forged signature: `first` fails at the audience, `second`
    // gets further and fails at the signature.
    let stranger = jose::generate_rsa_2048().unwrap();
    let forged = mint_with(&stranger, "k1", "b.example.com");
    assert_eq!(
        unary(url.clone(), Some(&forged)).await,
        Code::Unauthenticated
    );
    // The second's audience, signed: accepted by `second`.
    let good = mint(&key, "b.example.com");
    assert_eq!(unary(url.clone(), Some(&good)).await, Code::Ok);

    let (_, page) = settled_metrics(proxy.admin()).await;
    assert_eq!(auth(&page, "first", "audience"), 1.0);
    assert_eq!(auth(&page, "second", "audience"), 0.0);
    assert_eq!(auth(&page, "second", "signature"), 1.0);
    assert_eq!(auth(&page, "first", "signature"), 0.0);
    assert_eq!(auth(&page, "second", "allowed"), 1.0);
    assert_eq!(auth(&page, "first", "allowed"), 0.0);
    assert_eq!(page.sum("esprit_jwt_authentications_total", &[]), 3.0);
    assert_eq!(
        page.sum("esprit_jwt_authentications_total", &[("provider", "none")]),
        0.0
    );
}

/// A backend that is down, and a key server that is down (fail closed: the call is refused,
/// the key counted `unchecked`).
#[tokio::test]
async fn a_backend_or_key_server_that_is_down_is_counted() {
    let config = echo_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
  - selector: {CLIENT_STREAM}
    allow_unregistered_calls: false
"#
    ));
    let mut settings = settings_with_admin(dead_addr().await);
    let key_server = dead_addr().await;
    settings.api_keys.service_control_urls = vec![format!("http://{key_server}")];
    let proxy = RunningProxy::start(&config, settings).await;
    let mut client = echo_client(proxy.url()).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        client_stream(proxy.url(), "AIzaSomeKey").await,
        Code::Unavailable
    );

    let (_, page) = settled_metrics(proxy.admin()).await;
    assert_eq!(page.sum("esprit_backend_connect_failures_total", &[]), 1.0);
    assert_eq!(calls(&page, UNARY, Code::Unavailable, "200"), 1.0);
    assert_eq!(calls(&page, CLIENT_STREAM, Code::Unavailable, "200"), 1.0);
    assert_eq!(
        page.sum("esprit_api_key_checks_total", &[("outcome", "unchecked")]),
        1.0
    );
    assert_eq!(page.sum("esprit_api_key_checks_total", &[]), 1.0);
    assert_eq!(page.sum("esprit_api_key_cache_misses_total", &[]), 1.0);
    assert_eq!(page.sum("esprit_api_key_cache_hits_total", &[]), 0.0);
    let replica = key_server.to_string();
    assert!(
        page.sum(
            "esprit_api_key_server_attempts_total",
            &[("replica", &replica), ("outcome", "connect_error")]
        ) >= 1.0
    );
    assert_eq!(
        page.sum(
            "esprit_api_key_server_attempts_total",
            &[("replica", &replica), ("outcome", "answered")]
        ),
        0.0
    );
}

#[tokio::test]
async fn random_paths_do_not_grow_the_series() {
    let (_backend, proxy) = {
        let backend = start_echo().await;
        let proxy = RunningProxy::start(&echo_config(), settings_with_admin(backend.addr())).await;
        (backend, proxy)
    };
    let mut sender = h2c::<Full<Bytes>>(proxy.addr).await;
    let path = |i: u64| {
        let noise = now()
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(i.wrapping_mul(1_442_695_040_888_963_407));
        format!("/rnd{noise:x}.Svc{i}/M{}", noise % 977)
    };
    for i in 0..10 {
        raw_call(&mut sender, &path(i)).await;
    }
    let (before, _) = settled_metrics(proxy.admin()).await;
    // Concurrently, on one connection (one at a time would wait on delayed ACKs).
    let calls = (10..210).map(|i| {
        let mut sender = sender.clone();
        let path = path(i);
        async move { raw_call(&mut sender, &path).await }
    });
    futures::future::join_all(calls).await;
    let (after, page) = settled_metrics(proxy.admin()).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    // Only values changed: the same series, none named after a path.
    let non_process = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(series(&before), series(&after));
    assert_eq!(non_process(&before), non_process(&after));
    assert!(!after.contains("rnd"), "a client's path became a label");
    assert_eq!(
        page.sum("esprit_calls_total", &[("method", "undefined")]),
        210.0
    );
}

/// An echo backend that also serves grpc.health.v1, whose status the test sets.
async fn backend_with_health() -> (std::net::SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(echo::echo_server());
    (serve_router(router).await, reporter)
}

#[tokio::test]
async fn readyz_follows_the_backends_grpc_health() {
    let (backend, reporter) = backend_with_health().await;
    let mut settings = settings_with_admin(backend);
    settings.healthz = Some("/healthz".into());
    settings.backend_health = Some(proxy::BackendHealthCheck {
        interval: Duration::from_millis(50),
        service: String::new(),
    });
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let admin = proxy.admin();

    let body = wait_for_status(admin, "/readyz", 200, WAIT).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "READY");
    assert_eq!(body["checks"]["backend"], "ok");

    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let body = wait_for_status(admin, "/readyz", 503, WAIT).await;
    assert!(body.contains("NOT_SERVING"), "{body}");
    // ESPv2's --healthz on the data listener says so too; /healthz of the admin stays alive.
    wait_for_status(proxy.addr, "/healthz", 503, WAIT).await;
    assert_eq!(http_get(admin, "/healthz").await.0, 200);

    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    wait_for_status(admin, "/readyz", 200, WAIT).await;
    wait_for_status(proxy.addr, "/healthz", 200, WAIT).await;
}

#[tokio::test]
async fn readyz_asks_for_the_named_service() {
    let (backend, reporter) = backend_with_health().await;
    reporter
        .set_service_status("esprit.echo.v1.Echo", ServingStatus::NotServing)
        .await;
    let mut settings = settings_with_admin(backend);
    settings.backend_health = Some(proxy::BackendHealthCheck {
        interval: Duration::from_millis(50),
        service: "esprit.echo.v1.Echo".into(),
    });
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    // The server as a whole is SERVING; the named service is not.
    wait_for_status(proxy.admin(), "/readyz", 503, WAIT).await;
    reporter
        .set_service_status("esprit.echo.v1.Echo", ServingStatus::Serving)
        .await;
    wait_for_status(proxy.admin(), "/readyz", 200, WAIT).await;
}

#[tokio::test]
async fn readyz_waits_for_every_providers_keys() {
    let jwks_server = JwksServer::start().await.unwrap();
    jwks_server.set("/jwks", Reply::status(500));
    let backend = start_echo().await;
    let mut settings = settings_with_admin(backend.addr());
    settings.auth.jwks.retry_initial = Duration::from_millis(50);
    settings.auth.jwks.retry_max = Duration::from_millis(100);
    settings.api_keys.service_control_urls = vec!["http://127.0.0.1:9".into()];
    let proxy = RunningProxy::start(&config(&jwks_server.url("/jwks")), settings).await;

    // Fetches fail: not ready, and the page names the provider.
    wait_until_text(proxy.admin(), |text| {
        text.contains("esprit_jwks_fetch_failures_total{provider=\"consumer\"} ")
            && !text.contains("esprit_jwks_fetch_failures_total{provider=\"consumer\"} 0\n")
    })
    .await;
    let (status, body) = http_get(proxy.admin(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("consumer"), "{body}");

    // Once the keys can be fetched, ready.
    let key = jose::generate_rsa_2048().unwrap();
    jwks_server.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    wait_for_status(proxy.admin(), "/readyz", 200, WAIT).await;

    // --readyz-skip-keys: ready at once, keys or not.
    let mut settings = settings_with_admin(backend.addr());
    settings.admin.as_mut().unwrap().ready_requires_keys = false;
    settings.api_keys.service_control_urls = vec!["http://127.0.0.1:9".into()];
    let unfetchable = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), settings).await;
    wait_for_status(unfetchable.admin(), "/readyz", 200, WAIT).await;
}

/// Once shutdown starts, `/readyz` answers 503 `draining` while the calls in flight finish
/// (the admin listener outlives the drain), and `/healthz` stays alive.
#[tokio::test]
async fn readyz_is_unready_while_draining() {
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), settings_with_admin(backend.addr())).await;
    let admin = proxy.admin();
    let body = wait_for_status(admin, "/readyz", 200, WAIT).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["checks"]["listener"], "ok");

    // A stream held open keeps the drain going.
    let mut client = echo_client(proxy.url()).await;
    let (held, receiver) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    held.send(EchoRequest::default()).await.unwrap();
    let mut stream = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let drained = proxy.shutdown();

    let body = wait_for_status(admin, "/readyz", 503, WAIT).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "NOT_READY");
    assert_eq!(body["checks"]["listener"], "draining");
    assert_eq!(http_get(admin, "/healthz").await.0, 200);

    // The held call still flows, then ends; the drain completes.
    held.send(EchoRequest::default()).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    drop(held);
    assert!(stream.message().await.unwrap().is_none());
    assert!(drained.await.unwrap(), "the drain timed out");
}

#[tokio::test]
async fn healthz_config_and_unknown_paths() {
    let backend = start_echo().await;
    let mut settings = settings_with_admin(backend.addr());
    settings.admin.as_mut().unwrap().config_sources = vec!["service.yaml".into(), "api.pb".into()];
    let before = now();
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let admin = proxy.admin();
    assert!(admin.ip().is_loopback());
    assert_ne!(admin, proxy.addr);

    let (status, body) = http_get(admin, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"status": "ALIVE"})
    );

    let (status, body) = http_get(admin, "/config").await;
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["config_id"], echo_config().id().as_str());
    assert_eq!(body["sources"], json!(["service.yaml", "api.pb"]));
    let loaded = body["loaded_at_unix"].as_u64().unwrap();
    assert!(loaded >= before && loaded <= now(), "{body}");

    assert_eq!(http_get(admin, "/nope").await.0, 404);
    let (status, _) = http_get(proxy.addr, "/metrics").await;
    assert_ne!(
        status, 200,
        "the data listener must not serve the admin pages"
    );
}

#[tokio::test]
async fn no_admin_listener_unless_asked() {
    let (_backend, proxy) = echo_stack().await;
    assert!(proxy.admin.is_none());
    let (status, body) = http_get(proxy.addr, "/metrics").await;
    assert_ne!(status, 200);
    assert!(!body.contains("esprit_calls"), "{body}");
}
