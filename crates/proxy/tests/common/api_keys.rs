//! The set-up the API-key tests share (`api_keys.rs`, `api_keys_key_server.rs`): a config whose
//! methods take keys in different ways, esprit's real key server on a temporary store, a proxy
//! in front of it or of a scripted key server, and the messages a caller sees.

use std::path::PathBuf;

use echo::pb::EchoRequest;
use service_config::ServiceConfig;
use tonic::Request;

use super::*;

pub const MISSING: &str = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
pub const INVALID: &str = "API key not valid. Please pass a valid API key.";
pub const UNAVAILABLE: &str = "API key could not be checked: the key service is unavailable.";
/// Unary needs a key at the default locations; ServerStream allows unregistered calls;
/// ClientStream reads its key from `x-my-key` only; Bidi also needs a JWT (or none: allowed
/// without credential) — JWT is checked first, as in ESPv2.
pub fn config(jwks_uri: &str) -> ServiceConfig {
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
pub struct KeyService {
    _dir: tempfile::TempDir,
    store: PathBuf,
    pub url: String,
    server: KeyServer,
}

impl KeyService {
    pub async fn start() -> Self {
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
    pub async fn start_tls() -> (Self, PathBuf) {
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

    pub fn create(&self, project: &str) -> (String, String) {
        let (key, meta) = iam::Store::open(&self.store)
            .unwrap()
            .create_api_key(project, None, 0)
            .unwrap();
        (key, meta.id)
    }

    pub fn revoke(&self, id: &str) {
        iam::Store::open(&self.store)
            .unwrap()
            .revoke_api_key(id, 1)
            .unwrap();
    }

    pub fn stop(&mut self) {
        self.server.signal_stop();
    }
}

pub async fn stack(
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

pub async fn unary(
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

/// A proxy for `config` in front of a scripted key server (`keysets::test_server`), which
/// counts the checks it receives.
pub async fn scripted_stack(
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

pub const CHECK_PATH: &str = "/v1/services/echo.example.com:check";
