//! Shared test helpers: the fixed clock, the service config, the checked-in keys, token
//! minting, and a HashMap-based verified-token cache.
#![allow(dead_code)]
// Test helpers: a failure here is a broken fixture, and should panic.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use authn::{AuthPolicy, MethodPolicy, VerifiedToken, VerifiedTokens};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jose::{Algorithm, KeySet, KeySource, Signer, UnixTime};
use serde_json::{Value, json};
use service_config::{Descriptor, ProviderId, ServiceConfig};

/// The fixed "now" of every test: 2023-11-14T22:13:20Z.
pub const NOW: UnixTime = UnixTime(1_700_000_000);

pub const SERVICE: &str = "bookstore.example.com";
pub const PKG: &str = "endpoints.examples.bookstore.Bookstore";

pub const ISS_A: &str = "https://a.example.com";
pub const ISS_B: &str = "https://b.example.com";
pub const ISS_OPT: &str = "https://opt.example.com";
pub const ISS_CUSTOM: &str = "https://custom.example.com";
pub const ISS_SECOND: &str = "https://second.example.com";

/// Which rule each method has:
/// - `ListShelves`: provider `a` (default locations, default audience = the service name);
/// - `CreateShelf`: `a` with `allow_without_credential`;
/// - `GetShelf`: any of `a`, `b` (`b` has audiences `https://b1.example.com/, b2`), `a2` (same
///   issuer as `a`, but `b`'s key set);
/// - `DeleteShelf`: `opt` (`exp` optional);
/// - `ListBooks`: `custom` (header `X-Custom-Token` with prefix `Token `, query `jwt`);
/// - `CreateBook`: any of `a`, `second` (header `X-Second` only);
/// - `GetBook`: `a` with the requirement's own audience `https://override.example.com/`;
/// - `DeleteBook`: a rule without requirements (no JWT check).
pub const CONFIG: &str = r#"
type: google.api.Service
config_version: 3
name: bookstore.example.com
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: a
    issuer: https://a.example.com
    jwks_uri: https://a.example.com/jwks
  - id: b
    issuer: https://b.example.com
    jwks_uri: https://b.example.com/jwks
    audiences: "https://b1.example.com/, b2"
  - id: a2
    issuer: https://a.example.com
    jwks_uri: https://a2.example.com/jwks
  - id: opt
    issuer: https://opt.example.com
    jwks_uri: https://opt.example.com/jwks
    x_esprit_allow_missing_exp: true
  - id: custom
    issuer: https://custom.example.com
    jwks_uri: https://custom.example.com/jwks
    jwt_locations:
    - header: X-Custom-Token
      value_prefix: "Token "
    - query: jwt
  - id: second
    issuer: https://second.example.com
    jwks_uri: https://second.example.com/jwks
    jwt_locations:
    - header: X-Second
  rules:
  - selector: "*"
    requirements:
    - provider_id: a
  - selector: endpoints.examples.bookstore.Bookstore.CreateShelf
    allow_without_credential: true
    requirements:
    - provider_id: a
  - selector: endpoints.examples.bookstore.Bookstore.GetShelf
    requirements:
    - provider_id: a
    - provider_id: b
    - provider_id: a2
  - selector: endpoints.examples.bookstore.Bookstore.DeleteShelf
    requirements:
    - provider_id: opt
  - selector: endpoints.examples.bookstore.Bookstore.ListBooks
    requirements:
    - provider_id: custom
  - selector: endpoints.examples.bookstore.Bookstore.CreateBook
    requirements:
    - provider_id: a
    - provider_id: second
  - selector: endpoints.examples.bookstore.Bookstore.GetBook
    requirements:
    - provider_id: a
      audiences: https://override.example.com/
  - selector: endpoints.examples.bookstore.Bookstore.DeleteBook
"#;

/// Loads `yaml` with the Bookstore descriptor.
pub fn load(yaml: &str) -> Result<ServiceConfig, service_config::ConfigErrors> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/bookstore.pb");
    let descriptor = Descriptor::from_file_descriptor_set(std::fs::read(path).unwrap()).unwrap();
    service_config::from_yaml(yaml, descriptor)
}

pub fn config() -> &'static ServiceConfig {
    static CONFIG_CELL: OnceLock<ServiceConfig> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| load(CONFIG).unwrap_or_else(|e| panic!("{e}")))
}

pub fn policy() -> &'static AuthPolicy {
    static POLICY: OnceLock<AuthPolicy> = OnceLock::new();
    POLICY.get_or_init(|| AuthPolicy::from_config(config()))
}

/// The policy of a Bookstore method by short name (`ListShelves`).
pub fn method(name: &str) -> &'static Arc<MethodPolicy> {
    policy()
        .method(&format!("/{PKG}/{name}"))
        .unwrap_or_else(|| panic!("no method {name}"))
}

pub fn rsa() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| {
        Signer::from_pkcs8_pem(include_str!("../fixtures/rsa2048.pkcs8.pem")).unwrap()
    })
}

pub fn p256() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| Signer::from_pkcs8_pem(include_str!("../fixtures/p256.pkcs8.pem")).unwrap())
}

/// A P-256 key generated for this run, in no key set (an attacker's key).
pub fn stranger() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| jose::generate_es256().unwrap().signer().unwrap())
}

/// Provider `b`'s own key, generated for this run.
pub fn b_key() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| jose::generate_es256().unwrap().signer().unwrap())
}

pub fn jwk(signer: &Signer, kid: &str) -> Value {
    signer
        .public_key()
        .unwrap()
        .unwrap()
        .to_jwk(Some(kid), Some(signer.default_algorithm()))
}

pub fn jwks(keys: &[Value]) -> KeySet {
    KeySet::parse(
        json!({ "keys": keys }).to_string().as_bytes(),
        KeySource::Remote,
    )
    .unwrap()
}

/// The key sets: `rsa-1` and `ec-1` for every provider but `b` and `a2`, which have `b-1` only.
pub fn key_sets() -> HashMap<ProviderId, Arc<KeySet>> {
    let shared = Arc::new(jwks(&[jwk(rsa(), "rsa-1"), jwk(p256(), "ec-1")]));
    let mut sets: HashMap<ProviderId, Arc<KeySet>> = ["a", "opt", "custom", "second"]
        .into_iter()
        .map(|id| (ProviderId::new(id), Arc::clone(&shared)))
        .collect();
    let b = Arc::new(jwks(&[jwk(b_key(), "b-1")]));
    sets.insert(ProviderId::new("b"), Arc::clone(&b));
    sets.insert(ProviderId::new("a2"), b);
    sets
}

/// Claims valid for an hour from NOW, for provider `a` and the default audience.
pub fn claims() -> Value {
    json!({
        "iss": ISS_A,
        "sub": "user@example.com",
        "aud": SERVICE,
        "iat": NOW.0,
        "exp": NOW.0 + 3600,
    })
}

/// `claims()` with `changes` merged in; a `null` value removes the claim.
pub fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    let (Value::Object(map), Value::Object(changes)) = (&mut claims, changes) else {
        panic!("objects");
    };
    for (name, value) in changes {
        if value.is_null() {
            map.remove(&name);
        } else {
            map.insert(name, value);
        }
    }
    claims
}

/// An RS256 token from the RSA fixture with kid `rsa-1`.
pub fn token(claims: &Value) -> String {
    rsa()
        .sign_jwt(Some("rsa-1"), Algorithm::RS256, claims)
        .unwrap()
}

/// A token signed by `signer` with its usual algorithm.
pub fn token_by(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
    signer
        .sign_jwt(kid, signer.default_algorithm(), claims)
        .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from raw header and payload text, correctly RS256-signed, so that tests can put
/// anything in either.
pub fn raw_token(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = rsa().sign(Algorithm::RS256, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

/// `token` with one bit of its signature flipped.
pub fn tampered(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 0x01;
    format!("{input}.{}", b64(&sig))
}

/// `token` with its payload replaced and the original signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let signature = parts.nth(1).unwrap();
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}

/// A verified-token cache over a HashMap keyed by the full token, counting hits.
#[derive(Default)]
pub struct MapCache {
    entries: Mutex<HashMap<String, Arc<VerifiedToken>>>,
    hits: AtomicUsize,
}

impl MapCache {
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl VerifiedTokens for MapCache {
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        let hit = self.entries.lock().unwrap().get(token).cloned();
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }

    fn put(&self, token: &str, verified: Arc<VerifiedToken>) {
        self.entries
            .lock()
            .unwrap()
            .insert(token.to_owned(), verified);
    }
}
