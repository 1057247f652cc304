//! The admin listener's `/metrics` end to end: the page parsed by Prometheus' own Python parser
//! after a known sequence of calls, providers sharing an issuer, a backend or key server down,
//! and label cardinality under random paths. Real sockets throughout. (`/readyz`, `/healthz`,
//! `/config`: `admin_health.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::admin::*;
use common::*;
use echo::pb::EchoRequest;
use http_body_util::Full;
use keysets::test_server::{KeyServer as JwksServer, Reply, jwks};
use serde_json::json;
use testkit::MetricsPage;
use tonic::{Code, Request};

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
    let backend = dead_addr();
    let mut settings = settings_with_admin(backend.addr());
    let key_server = dead_addr();
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
