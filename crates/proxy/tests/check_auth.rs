//! Authenticated API-key checks end to end (issue 12, item 3): the proxy with
//! `--service-account-key` in front of esprit's real key server requiring credentials
//! (`iam::CheckAuth::Required`), the echo backend and a real gRPC client. The proxy's account
//! is granted, denied and revoked `roles/servicemanagement.serviceController` through a second
//! store connection while everything runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use echo::pb::EchoRequest;
use iam::{KeyAlgorithm, KeyServerUrl, ServiceRole, Store};
use tonic::{Code, Request};

/// Every method needs an API key; the service is `echo.example.com`.
const CONFIG: &str = "\
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
";
const SERVICE: &str = "echo.example.com";
const UNAVAILABLE: &str = "API key could not be checked: the key service is unavailable.";
const SC: ServiceRole = ServiceRole::ServiceController;

struct Fixture {
    _dir: tempfile::TempDir,
    store_path: PathBuf,
    proxy_email: String,
    proxy_key: PathBuf,
    api_key: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("iam.db");
        let mut store = Store::open(&store_path).unwrap();
        let proxy_email = store
            .create_account("esprit-proxy", "producer-project", 0)
            .unwrap()
            .email;
        let proxy_key = dir.path().join("proxy.json");
        store
            .create_key(
                &proxy_email,
                KeyAlgorithm::Es256,
                &KeyServerUrl::default(),
                &proxy_key,
                0,
            )
            .unwrap();
        let (api_key, _) = store.create_api_key("consumer-project", None, 0).unwrap();
        Fixture {
            _dir: dir,
            store_path,
            proxy_email,
            proxy_key,
            api_key,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.store_path).unwrap()
    }
}

async fn proxy_with(
    key_server: &KeyServer,
    backend: &echo::RunningServer,
    key_file: Option<&Path>,
    on_unreachable: proxy::OnUnreachable,
) -> RunningProxy {
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_urls = vec![key_server.url()];
    settings.api_keys.on_unreachable = on_unreachable;
    settings.api_keys.service_account_key =
        key_file.map(|path| Arc::new(proxy::CallerCredentials::load(path).unwrap()));
    RunningProxy::start(&echo_service(CONFIG), settings).await
}

async fn unary(proxy: &RunningProxy, key: &str) -> Result<echo::pb::EchoResponse, tonic::Status> {
    let mut client = echo_client(proxy.url()).await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    client.unary(request).await.map(|r| r.into_inner())
}

fn assert_unavailable(what: &str, got: Result<echo::pb::EchoResponse, tonic::Status>) {
    let status = got.expect_err(what);
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    assert_eq!(status.message(), UNAVAILABLE, "{what}");
}

#[tokio::test]
async fn the_proxy_authenticates_its_checks_and_fails_closed_without_the_role() {
    let fx = Fixture::new();
    let key_server =
        KeyServer::start_checked(&fx.store_path, None, iam::CheckAuth::required()).await;
    let backend = start_echo().await;
    let signed = proxy_with(
        &key_server,
        &backend,
        Some(&fx.proxy_key),
        proxy::OnUnreachable::FailClosed,
    )
    .await;
    let signed_fail_open = proxy_with(
        &key_server,
        &backend,
        Some(&fx.proxy_key),
        proxy::OnUnreachable::FailOpen,
    )
    .await;
    let anonymous = proxy_with(&key_server, &backend, None, proxy::OnUnreachable::FailOpen).await;

    // The proxy's account holds no role (403), or the proxy sends no token (401): refused, and
    // fail-open does not open for it.
    assert_unavailable("no role", unary(&signed, &fx.api_key).await);
    assert_unavailable(
        "no role, fail-open",
        unary(&signed_fail_open, &fx.api_key).await,
    );
    assert_unavailable("no token, fail-open", unary(&anonymous, &fx.api_key).await);
    // A role on another service is no role on this one.
    fx.store()
        .grant_service_role(&fx.proxy_email, SC, "other.example.com", 0)
        .unwrap();
    assert_unavailable("role on another service", unary(&signed, &fx.api_key).await);

    // Granted: the refusals were not cached; the key decision is as before.
    fx.store()
        .grant_service_role(&fx.proxy_email, SC, SERVICE, 0)
        .unwrap();
    let reply = unary(&signed, &fx.api_key).await.unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .map(String::as_str),
        Some("consumer-project")
    );
    let invalid = unary(&signed, "AIzaSyNotARealKeyNotARealKeyNotARealK")
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    unary(&signed_fail_open, &fx.api_key).await.unwrap();
    assert_unavailable("still no token", unary(&anonymous, &fx.api_key).await);

    // Revoked: a key the proxy has not cached is refused again (a cached answer lives its
    // --service-control-cache-valid, as any cached key does).
    fx.store()
        .revoke_service_role(&fx.proxy_email, SC, SERVICE)
        .unwrap();
    let (fresh, _) = fx
        .store()
        .create_api_key("consumer-project", None, 0)
        .unwrap();
    assert_unavailable("revoked", unary(&signed, &fresh).await);
    unary(&signed, &fx.api_key).await.unwrap();
}
