//! API keys end to end: the proxy, esprit's real key server (`iam::serve` on a temporary
//! store), the echo backend showing what it received, and real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use echo::pb::EchoRequest;
use service_config::ServiceConfig;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

const MISSING: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const INVALID: &str = "API key not valid. Please pass a valid API key.";
const UNAVAILABLE: &str = "API key could not be checked: the key service is unavailable.";

/// Unary needs a key at the default locations; ServerStream allows unregistered calls;
/// ClientStream reads its key from `x-my-key` only; Bidi also needs a JWT (or none: allowed
/// without credential) — JWT is checked first, as in ESPv2.
fn config(jwks_uri: &str) -> ServiceConfig {
    let yaml = format!(
        r#"
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
usage:
  rules:
  - selector: esprit.echo.v1.Echo.ServerStream
    allow_unregistered_calls: true
system_parameters:
  rules:
  - selector: esprit.echo.v1.Echo.ClientStream
    parameters:
    - name: api_key
      http_header: x-my-key
authentication:
  providers:
  - id: consumer
    issuer: client@consumer.iam.gserviceaccount.com
    jwks_uri: {jwks_uri}
  rules:
  - selector: esprit.echo.v1.Echo.Bidi
    allow_without_credential: true
    requirements:
    - provider_id: consumer
"#
    );
    echo_service(&yaml)
}

/// `esprit iam serve` on a temporary store, in this process.
struct KeyService {
    _dir: tempfile::TempDir,
    store: PathBuf,
    url: String,
    server: KeyServer,
}

impl KeyService {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        iam::Store::open(&store).unwrap();
        let server = KeyServer::start(&store).await;
        Self {
            _dir: dir,
            store,
            url: server.url(),
            server,
        }
    }

    /// Over TLS with a server certificate for 127.0.0.1 signed by a private CA; returns the
    /// CA's PEM file too.
    async fn start_tls() -> (Self, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        iam::Store::open(&store).unwrap();
        let pki = keysets::test_server::TestPki::generate().unwrap();
        let (ca, cert, key) = (
            dir.path().join("ca.pem"),
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
        );
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        std::fs::write(&cert, &pki.server_cert_pem).unwrap();
        std::fs::write(&key, &pki.server_key_pem).unwrap();
        let server = KeyServer::start_tls(&store, &cert, &key).await;
        let keys = Self {
            _dir: dir,
            store,
            url: server.url(),
            server,
        };
        (keys, ca)
    }

    fn create(&self, project: &str) -> (String, String) {
        let (key, meta) = iam::Store::open(&self.store)
            .unwrap()
            .create_api_key(project, None, 0)
            .unwrap();
        (key, meta.id)
    }

    fn revoke(&self, id: &str) {
        iam::Store::open(&self.store)
            .unwrap()
            .revoke_api_key(id, 1)
            .unwrap();
    }

    fn stop(&mut self) {
        self.server.signal_stop();
    }
}

async fn stack(
    tune: impl FnOnce(&mut proxy::ProxySettings),
) -> (KeyService, echo::RunningServer, RunningProxy) {
    let keys = KeyService::start().await;
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_urls = vec![keys.url.clone()];
    tune(&mut settings);
    // No key set is needed for these tests: Bidi's JWT is optional and we send none, or junk.
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), settings).await;
    (keys, backend, proxy)
}

async fn unary(
    url: String,
    metadata: &[(&str, &str)],
) -> Result<echo::pb::EchoResponse, tonic::Status> {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest::default());
    for (k, v) in metadata {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).unwrap();
        request.metadata_mut().insert(key, v.parse().unwrap());
    }
    client.unary(request).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn every_rule_combination_with_code_and_message() {
    let (keys, _backend, proxy) = stack(|_| {}).await;
    let (valid, _) = keys.create("consumer-project");
    let (revoked, revoked_id) = keys.create("consumer-project");
    keys.revoke(&revoked_id);
    let mut client = echo_client(proxy.url()).await;

    // Unary: default locations. (description, metadata, code, message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Code, &'a str);
    let table: Vec<Case> = vec![
        ("no key", vec![], Code::Unauthenticated, MISSING),
        (
            "valid key in x-api-key",
            vec![("x-api-key", valid.as_str())],
            Code::Ok,
            "",
        ),
        (
            "unknown key",
            vec![("x-api-key", "AIzaSyNotARealKeyNotARealKeyNotARealK")],
            Code::InvalidArgument,
            INVALID,
        ),
        (
            "revoked key",
            vec![("x-api-key", revoked.as_str())],
            Code::InvalidArgument,
            INVALID,
        ),
        (
            "key in a header the method does not read",
            vec![("x-my-key", valid.as_str())],
            Code::Unauthenticated,
            MISSING,
        ),
    ];
    for (desc, metadata, code, message) in table {
        match unary(proxy.url(), &metadata).await {
            Ok(reply) => {
                assert_eq!(code, Code::Ok, "{desc}");
                assert_eq!(
                    reply
                        .metadata
                        .get("x-endpoint-api-consumer-project")
                        .map(String::as_str),
                    Some("consumer-project"),
                    "{desc}"
                );
            }
            Err(status) => {
                assert_eq!(status.code(), code, "{desc}");
                assert_eq!(status.message(), message, "{desc}");
            }
        }
    }

    // Query parameters `key` and `api_key` (default locations), over raw HTTP/2.
    for param in ["key", "api_key"] {
        let path = format!("/esprit.echo.v1.Echo/Unary?{param}={valid}");
        assert_eq!(
            raw_grpc_call(proxy.addr, &path, &[]).await.grpc_status(),
            Some(0),
            "{param}"
        );
    }

    // ServerStream allows unregistered calls: no key needed, and a forged consumer project
    // never reaches the backend.
    let mut request = Request::new(EchoRequest {
        count: 1,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-endpoint-api-consumer-project",
        MetadataValue::from_static("forged"),
    );
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        !first
            .metadata
            .contains_key("x-endpoint-api-consumer-project"),
        "{:?}",
        first.metadata
    );

    // A forged consumer project next to a valid key is replaced by the real one.
    let reply = unary(
        proxy.url(),
        &[
            ("x-api-key", &valid),
            ("x-endpoint-api-consumer-project", "forged"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "consumer-project"
    );

    // ClientStream reads `x-my-key` (system_parameters) and nothing else.
    for (header, want) in [("x-my-key", Code::Ok), ("x-api-key", Code::Unauthenticated)] {
        let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
        request
            .metadata_mut()
            .insert(header, valid.parse().unwrap());
        let got = client
            .client_stream(request)
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(got, want, "{header}");
    }

    // Bidi: JWT (allowed without credential) and API key. A bad token is refused first; no
    // token and no key fails on the key; no token and a valid key passes.
    let bidi = |metadata: Vec<(&'static str, String)>| {
        let mut client = client.clone();
        async move {
            let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
            for (k, v) in metadata {
                request.metadata_mut().insert(k, v.parse().unwrap());
            }
            match client.bidi(request).await {
                Ok(response) => response.into_inner().message().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
    };
    let status = bidi(vec![
        ("authorization", "Bearer junk".into()),
        ("x-api-key", valid.clone()),
    ])
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with("Jwt is not in the form"),
        "{}",
        status.message()
    );
    let status = bidi(vec![]).await.unwrap_err();
    assert_eq!(status.message(), MISSING);
    bidi(vec![("x-api-key", valid.clone())]).await.unwrap();
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_duration() {
    // The cache's expiry is read from the injected clock: time moves when the test says so.
    let clock = clock::ManualClock::starting_now();
    let cache_valid = Duration::from_secs(60);
    let (keys, _backend, proxy) = stack(|s| {
        s.api_keys.cache_valid = cache_valid;
        s.clock = clock.shared();
    })
    .await;
    let (key, id) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    keys.revoke(&id);
    // Still cached as valid: no round trip, still accepted, up to the last millisecond.
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    clock.advance(cache_valid - Duration::from_millis(1));
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    clock.advance(Duration::from_millis(1));
    let status = unary(proxy.url(), &[("x-api-key", &key)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);
}

#[tokio::test]
async fn key_server_down_fails_closed_but_cached_keys_keep_working() {
    let (mut keys, _backend, proxy) = stack(|_| {}).await;
    let (cached, _) = keys.create("p-project");
    let (uncached, _) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &cached)]).await.unwrap();
    keys.stop();
    // Real time: the key server's listener closes on its own task, over real sockets.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = unary(proxy.url(), &[("x-api-key", &uncached)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "API key could not be checked: the key service is unavailable."
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let reply = unary(proxy.url(), &[("x-api-key", &cached)]).await.unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "p-project"
    );
}

#[tokio::test]
async fn key_server_down_with_fail_open_lets_calls_through() {
    let (mut keys, _backend, proxy) = stack(|s| {
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    let (key, _) = keys.create("p-project");
    keys.stop();
    // Real time, as above.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    // Nothing was checked, so nothing is vouched for.
    assert!(
        !reply
            .metadata
            .contains_key("x-endpoint-api-consumer-project")
    );
    // A missing key is still refused: fail open concerns the key server, not the rule.
    let status = unary(proxy.url(), &[]).await.unwrap_err();
    assert_eq!(status.message(), MISSING);
}

#[tokio::test]
async fn many_calls_with_one_uncached_key_cause_one_check() {
    use keysets::test_server::{KeyServer, Reply};
    // A key server that answers slowly and counts: every call below overlaps the first check.
    let checks = KeyServer::start().await.unwrap();
    let path = "/v1/services/echo.example.com:check";
    let answer = r#"{"valid":true,"key_id":"k","consumer_project":"counted"}"#;
    checks.set(
        path,
        Reply::slow(Duration::from_millis(300), Reply::json(answer)),
    );
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_urls = vec![format!("http://{}", checks.addr())];
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), settings).await;
    let client = echo_client(proxy.url()).await;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = Request::new(EchoRequest::default());
                request.metadata_mut().insert(
                    "x-api-key",
                    MetadataValue::from_static("AIzaSameKeyForEveryone"),
                );
                client.unary(request).await
            })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap().unwrap().into_inner();
        assert_eq!(
            reply
                .metadata
                .get("x-endpoint-api-consumer-project")
                .unwrap(),
            "counted"
        );
    }
    assert_eq!(
        checks.hits(path),
        1,
        "concurrent calls with one key must share one check"
    );
}

const OVERLOADED: &str = "API key could not be checked: too many checks are in progress.";

/// A proxy for `config` in front of a scripted key server (`keysets::test_server`), which
/// counts the checks it receives.
async fn scripted_stack(
    tune: impl FnOnce(&mut proxy::ProxySettings),
) -> (
    keysets::test_server::KeyServer,
    echo::RunningServer,
    RunningProxy,
) {
    let checks = keysets::test_server::KeyServer::start().await.unwrap();
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_urls = vec![format!("http://{}", checks.addr())];
    tune(&mut settings);
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), settings).await;
    (checks, backend, proxy)
}

const CHECK_PATH: &str = "/v1/services/echo.example.com:check";

/// Issue 9, item 1: a fail-open proxy in front of the real key server refuses a 9 000-byte junk
/// key (the key server would answer 413, which used to count as "unreachable" and let it in).
#[tokio::test]
async fn fail_open_refuses_an_overlong_key() {
    let (keys, _backend, proxy) = stack(|s| {
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    let junk = "k".repeat(9_000);
    let status = unary(proxy.url(), &[("x-api-key", &junk)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);
    // In the query too.
    let path = format!("/esprit.echo.v1.Echo/Unary?key={junk}");
    assert_eq!(
        raw_grpc_call(proxy.addr, &path, &[]).await.grpc_status(),
        Some(3)
    );
    // A real key still works through the same proxy.
    let (key, _) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
}

/// Issue 9, item 1: fail-open opens only for an unreachable key server (5xx, connect failure);
/// a 4xx, or an answer without a verdict, is an invalid key. Issue 12: but 401/403 are about
/// the proxy's own credentials: refused as unavailable (below), never let through.
#[tokio::test]
async fn fail_open_opens_only_when_the_key_server_is_unreachable() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = stack_fail_open().await;
    // (reply, allowed). Each case uses its own key: invalid answers are cached.
    let table = [
        (Reply::status(400), false),
        (Reply::status(413), false),
        (Reply::status(429), false),
        (Reply::json("garbage"), false),
        (Reply::json("{}"), false),
        (Reply::json(r#"{"valid":true}"#), false),
        (
            Reply::json(r#"{"valid":"yes","consumer_project":"p"}"#),
            false,
        ),
        (Reply::status(500), true),
        (Reply::status(503), true),
        (
            Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
            true,
        ),
    ];
    for (i, (reply, allowed)) in table.into_iter().enumerate() {
        let desc = format!("{reply:?}");
        checks.set(CHECK_PATH, reply);
        let key = format!("AIzaCase{i}");
        match unary(proxy.url(), &[("x-api-key", &key)]).await {
            Ok(_) => assert!(allowed, "{desc}: let through"),
            Err(status) => {
                assert!(!allowed, "{desc}: refused with {status:?}");
                assert_eq!(status.code(), Code::InvalidArgument, "{desc}");
                assert_eq!(status.message(), INVALID, "{desc}");
            }
        }
    }
    // 401/403: the key server refuses the proxy itself. Fails closed even with fail-open, and
    // is not cached as an answer about the key: the next call asks again.
    for status in [401, 403] {
        checks.set(CHECK_PATH, Reply::status(status));
        let before = checks.hits(CHECK_PATH);
        let key = format!("AIzaRefused{status}");
        for _ in 0..2 {
            let refused = unary(proxy.url(), &[("x-api-key", &key)])
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::Unavailable, "{status}");
            assert_eq!(refused.message(), UNAVAILABLE, "{status}");
        }
        assert_eq!(checks.hits(CHECK_PATH), before + 2, "{status}");
    }
    // A stopped key server: unreachable, so fail-open lets the call through.
    checks.stop().await;
    unary(proxy.url(), &[("x-api-key", "AIzaAfterStop")])
        .await
        .unwrap();
}

async fn stack_fail_open() -> (
    keysets::test_server::KeyServer,
    echo::RunningServer,
    RunningProxy,
) {
    scripted_stack(|s| s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen).await
}

/// Issue 9, item 5: calls that can never be served (HTTP/1.1, or not gRPC) are answered 415
/// before any key is checked: the key server sees no request, whatever the key.
#[tokio::test]
async fn calls_that_cannot_be_served_cause_no_key_checks() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = scripted_stack(|_| {}).await;
    checks.set(
        CHECK_PATH,
        Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
    );
    for i in 0..5 {
        let request = format!(
            "POST /esprit.echo.v1.Echo/Unary?key=AIzaQuery{i} HTTP/1.1\r\nhost: x\r\nx-api-key: AIzaHeader{i}\r\n\
             content-type: application/grpc\r\ncontent-length: 5\r\nconnection: close\r\n\r\n\0\0\0\0\0"
        );
        let (status, _, _) = http1(proxy.addr, &request).await;
        assert_eq!(status, 415);
    }
    // HTTP/2 with a content type other than gRPC.
    let response = raw_h2_post(
        proxy.addr,
        "/esprit.echo.v1.Echo/Unary",
        "application/json",
        "AIzaJson",
    )
    .await;
    assert_eq!(response, 415);
    assert_eq!(
        checks.hits(CHECK_PATH),
        0,
        "a key check for a call that cannot be served"
    );
    // A gRPC call with a key is checked (the counter works).
    unary(proxy.url(), &[("x-api-key", "AIzaGrpc")])
        .await
        .unwrap();
    assert_eq!(checks.hits(CHECK_PATH), 1);
}

/// An HTTP/2 POST with `content_type` and an `x-api-key`; returns the HTTP status.
async fn raw_h2_post(addr: std::net::SocketAddr, path: &str, content_type: &str, key: &str) -> u16 {
    let mut sender = h2c(addr).await;
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("x-api-key", key)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue 9, item 6: at most `max_pending_checks` key-server checks are outstanding; calls past
/// the cap are refused with UNAVAILABLE — even with fail-open, saturation is never a way in.
#[tokio::test]
async fn outstanding_key_checks_are_capped() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = scripted_stack(|s| {
        s.api_keys.max_pending_checks = 3;
        s.api_keys.check_timeout = Duration::from_secs(20);
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    checks.set(
        CHECK_PATH,
        // Long enough that all twelve calls arrive while the first checks are outstanding, even
        // on a loaded machine.
        Reply::slow(
            Duration::from_secs(3),
            Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
        ),
    );
    let client = echo_client(proxy.url()).await;
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = Request::new(EchoRequest::default());
                request
                    .metadata_mut()
                    .insert("x-api-key", format!("AIzaDistinct{i}").parse().unwrap());
                client.unary(request).await
            })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(reply) => {
                allowed += 1;
                assert_eq!(
                    reply
                        .into_inner()
                        .metadata
                        .get("x-endpoint-api-consumer-project")
                        .unwrap(),
                    "p"
                );
            }
            Err(status) => {
                refused += 1;
                assert_eq!(status.code(), Code::Unavailable);
                assert_eq!(status.message(), OVERLOADED);
            }
        }
    }
    assert!(
        checks.hits(CHECK_PATH) <= 3,
        "{} checks",
        checks.hits(CHECK_PATH)
    );
    assert!((1..=3).contains(&allowed), "{allowed} allowed");
    assert_eq!(allowed + refused, 12);
}

#[tokio::test]
async fn key_server_over_tls_with_a_private_ca() {
    let (keys, ca) = KeyService::start_tls().await;
    assert!(keys.url.starts_with("https://127.0.0.1:"), "{}", keys.url);
    let (valid, _) = keys.create("tls-project");
    let backend = start_echo().await;
    let mut trusting = settings(backend.addr());
    trusting.api_keys.service_control_urls = vec![keys.url.clone()];
    trusting.api_keys.service_control_ca = Some(ca);
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), trusting).await;

    let reply = unary(proxy.url(), &[("x-api-key", &valid)]).await.unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "tls-project"
    );
    let status = unary(
        proxy.url(),
        &[("x-api-key", "AIzaSyNotARealKeyNotARealKeyNotARealK")],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);

    // Without the CA the server's certificate is not trusted: the check fails, closed, and the
    // echo backend (which would answer OK) is not reached.
    let mut untrusting = settings(backend.addr());
    untrusting.api_keys.service_control_urls = vec![keys.url.clone()];
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), untrusting).await;
    let status = unary(proxy.url(), &[("x-api-key", &valid)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "API key could not be checked: the key service is unavailable."
    );
}

#[tokio::test]
async fn plain_http_key_server_off_loopback_is_refused_unless_allowed() {
    let backend = start_echo().await;
    let mut refused = settings(backend.addr());
    // 192.0.2.1 (TEST-NET-1): never contacted, the URL is refused before any check.
    refused.api_keys.service_control_urls = vec!["http://192.0.2.1:8085".into()];
    let err = match proxy::Proxy::bind(&config("http://127.0.0.1:9/jwks"), refused).await {
        Ok(_) => panic!("a plain http key server off loopback was accepted"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("--service-control-allow-insecure-http"),
        "{err}"
    );

    let mut allowed = settings(backend.addr());
    allowed.api_keys.service_control_urls = vec!["http://192.0.2.1:8085".into()];
    allowed.api_keys.allow_insecure_http = true;
    assert!(
        proxy::Proxy::bind(&config("http://127.0.0.1:9/jwks"), allowed)
            .await
            .is_ok()
    );
}
