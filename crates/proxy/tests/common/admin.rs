//! The set-up the admin-listener tests share (`admin.rs`, `admin_health.rs`): a config with a
//! JWT provider, an API key and an open method, tokens, calls, and readers of `/metrics`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use bytes::Bytes;
use echo::pb::EchoRequest;
use http_body_util::{BodyExt as _, Full};
use jose::GeneratedKey;
use serde_json::json;
use service_config::ServiceConfig;
use testkit::MetricsPage;
use tonic::{Code, Request};

pub const ISSUER: &str = "client@consumer-project.iam.gserviceaccount.com";
pub const SERVICE: &str = "echo.example.com";
pub const UNARY: &str = "esprit.echo.v1.Echo.Unary";
pub const CLIENT_STREAM: &str = "esprit.echo.v1.Echo.ClientStream";
pub const WAIT: Duration = Duration::from_secs(20);

pub const SERVER_STREAM: &str = "esprit.echo.v1.Echo.ServerStream";
/// An account of the issuer's project that `consumer`'s tokens never name.
pub const OTHER_CALLER: &str = "someone-else@consumer-project.iam.gserviceaccount.com";

/// Unary needs a JWT of `consumer`; ServerStream too, from a caller `consumer`'s tokens never
/// name; ClientStream needs an API key; the rest (Bidi) are open.
pub fn config(jwks_uri: &str) -> ServiceConfig {
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

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn mint(key: &GeneratedKey, aud: &str) -> String {
    mint_with(key, "k1", aud)
}

pub fn mint_with(key: &GeneratedKey, kid: &str, aud: &str) -> String {
    let now = now();
    sign(
        key,
        kid,
        json!({"iss": ISSUER, "sub": "1", "aud": aud, "iat": now, "exp": now + 3600}),
    )
}

pub fn sign(key: &GeneratedKey, kid: &str, claims: serde_json::Value) -> String {
    key.signer()
        .unwrap()
        .sign_jwt(Some(kid), key.algorithm, &claims)
        .unwrap()
}

pub async fn unary(url: String, token: Option<&str>) -> Code {
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

pub async fn client_stream(url: String, key: &str) -> Code {
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
pub async fn raw_call(
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
pub async fn settled_metrics(admin: std::net::SocketAddr) -> (String, MetricsPage) {
    let text = wait_until_text(admin, |text| text.contains("\nesprit_calls_in_flight 0\n")).await;
    let parsed = {
        let text = text.clone();
        tokio::task::spawn_blocking(move || MetricsPage::parse(&text))
            .await
            .unwrap()
    };
    (text, parsed)
}

pub async fn wait_until_text(admin: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> String {
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

pub fn calls(page: &MetricsPage, method: &str, code: Code, http_status: &str) -> f64 {
    page.sum(
        "esprit_calls_total",
        &[
            ("method", method),
            ("grpc_code", proxy::code_name(code)),
            ("http_status", http_status),
        ],
    )
}

pub async fn server_stream(url: String, token: &str) -> Code {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    stream_outcome(client.server_stream(request).await).await
}

pub fn auth(page: &MetricsPage, provider: &str, result: &str) -> f64 {
    page.sum(
        "esprit_jwt_authentications_total",
        &[("provider", provider), ("result", result)],
    )
}
