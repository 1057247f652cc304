//! API keys end to end: the proxy, esprit's real key server (`iam::serve` on a temporary
//! store), the echo backend showing what it received, and real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use echo::pb::EchoRequest;
use service_config::{Descriptor, ServiceConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

const MISSING: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
const INVALID: &str = "API key not valid. Please pass a valid API key.";

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
    let descriptor = Descriptor::from_file_descriptor_set(echo::FILE_DESCRIPTOR_SET).unwrap();
    service_config::from_yaml(&yaml, descriptor).unwrap()
}

/// `esprit iam serve` on a temporary store, in this process.
struct KeyService {
    _dir: tempfile::TempDir,
    store: PathBuf,
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl KeyService {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        iam::Store::open(&store).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let path = store.clone();
        tokio::spawn(async move {
            iam::serve(listener, &path, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            _dir: dir,
            store,
            url,
            stop: Some(stop),
        }
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn stack(
    tune: impl FnOnce(&mut proxy::ProxySettings),
) -> (KeyService, echo::RunningServer, RunningProxy) {
    let keys = KeyService::start().await;
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_url = Some(keys.url.clone());
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
    let (keys, _backend, proxy) = stack(|s| {
        s.api_keys.cache_valid = Duration::from_secs(1);
    })
    .await;
    let (key, id) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    keys.revoke(&id);
    // Still cached as valid: no round trip, still accepted.
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    use jwks_cache::test_server::{KeyServer, Reply};
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
    settings.api_keys.service_control_url = Some(format!("http://{}", checks.addr()));
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
