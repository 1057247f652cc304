//! The admin listener's health pages end to end: `/readyz` following the backend's gRPC health,
//! the key sets and a drain, `/healthz`, `/config`, and no admin listener unless asked. Real
//! sockets throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::admin::*;
use common::*;
use echo::pb::EchoRequest;
use keysets::test_server::{KeyServer as JwksServer, Reply, jwks};
use serde_json::json;
use tonic_health::ServingStatus;

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
