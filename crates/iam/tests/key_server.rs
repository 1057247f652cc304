//! The key server over real sockets, on both store backends: `iam::serve` on 127.0.0.1:0, a
//! store changed by a second connection (as the CLI would) while it serves, and a plain
//! HTTP/1.1 client.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use iam::{
    BindingFilter, IamError, KeyAlgorithm, KeyServerUrl, KeyStatus, PoolSettings, Role,
    SCHEMA_VERSION, Store, StorePool, encode_path_segment,
};
use serde_json::Value;
use testkit::{KeyServer, TestStore};
use tokio::net::TcpStream;

const NOW: u64 = 1_750_000_000;

struct Reply {
    status: StatusCode,
    cache_control: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn call(addr: SocketAddr, method: Method, path: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &hyper::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let status = response.status();
    let cache_control = header(hyper::header::CACHE_CONTROL);
    let content_type = header(hyper::header::CONTENT_TYPE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {bytes:?}"));
    Reply {
        status,
        cache_control,
        content_type,
        body,
    }
}

fn x509_path(email: &str) -> String {
    format!("/robot/v1/metadata/x509/{}", encode_path_segment(email))
}

fn jwk_path(email: &str) -> String {
    format!("/service_accounts/v1/jwk/{}", encode_path_segment(email))
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

fn map_kids(map: &Value) -> Vec<String> {
    let mut kids: Vec<String> = map.as_object().unwrap().keys().cloned().collect();
    kids.sort();
    kids
}

fn setup(ts: &TestStore) -> (Store, String) {
    let mut store = Store::open(ts.location()).unwrap();
    let email = store
        .create_account("bookstore-client", "my-project", NOW)
        .unwrap()
        .email;
    (store, email)
}

async fn serves_both_documents_and_follows_the_store(ts: TestStore) {
    let (mut cli, email) = setup(&ts);
    let base = KeyServerUrl::default();
    let rsa = cli
        .create_key(
            &email,
            KeyAlgorithm::Rs256,
            &base,
            &ts.file("rsa.json"),
            NOW,
        )
        .unwrap();
    let server = KeyServer::start(ts.location()).await;

    let jwks = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.cache_control.as_deref(), Some("public, max-age=300"));
    assert_eq!(
        jwks.content_type.as_deref(),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(kids(&jwks.body), vec![rsa.key_id.clone()]);
    let jwk = &jwks.body["keys"][0];
    assert_eq!(
        (&jwk["kty"], &jwk["alg"], &jwk["use"], &jwk["e"]),
        (
            &Value::from("RSA"),
            &Value::from("RS256"),
            &Value::from("sig"),
            &Value::from("AQAB")
        )
    );

    let x509 = call(server.addr, Method::GET, &x509_path(&email)).await;
    assert_eq!(x509.status, StatusCode::OK);
    assert_eq!(x509.cache_control.as_deref(), Some("public, max-age=300"));
    assert_eq!(x509.body[&rsa.key_id], rsa.certificate_pem.as_str());
    // The unencoded `@` works too.
    let raw = call(
        server.addr,
        Method::GET,
        &format!("/robot/v1/metadata/x509/{email}"),
    )
    .await;
    assert_eq!(raw.body, x509.body);

    // A key created by another connection while serving appears at the next request.
    let ec = cli
        .create_key(&email, KeyAlgorithm::Es256, &base, &ts.file("ec.json"), NOW)
        .unwrap();
    let mut both = vec![rsa.key_id.clone(), ec.key_id.clone()];
    both.sort();
    let jwks = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(kids(&jwks.body), both);
    let ec_jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == ec.key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(ec_jwk["kty"], "EC");
    assert_eq!(ec_jwk["crv"], "P-256");
    assert_eq!(ec_jwk["alg"], "ES256");
    let x509 = call(server.addr, Method::GET, &x509_path(&email)).await;
    assert_eq!(map_kids(&x509.body), both);

    // Disabled: gone from both documents; enabled again: back.
    cli.set_key_state(&email, &rsa.key_id, KeyStatus::Disabled)
        .unwrap();
    let jwks = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(kids(&jwks.body), vec![ec.key_id.clone()]);
    let x509 = call(server.addr, Method::GET, &x509_path(&email)).await;
    assert_eq!(map_kids(&x509.body), vec![ec.key_id.clone()]);
    cli.set_key_state(&email, &rsa.key_id, KeyStatus::Enabled)
        .unwrap();
    let jwks = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(kids(&jwks.body), both);

    // Deleted: gone; with no key left the documents are empty, not 404.
    cli.delete_key(&email, &rsa.key_id).unwrap();
    cli.delete_key(&email, &ec.key_id).unwrap();
    let jwks = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(jwks.body, serde_json::json!({"keys": []}));
    let x509 = call(server.addr, Method::GET, &x509_path(&email)).await;
    assert_eq!(x509.status, StatusCode::OK);
    assert_eq!(x509.body, serde_json::json!({}));

    server.stop().await;
}

async fn unknown_accounts_and_paths_are_json_404s(ts: TestStore) {
    let (mut cli, _email) = setup(&ts);
    let server = KeyServer::start(ts.location()).await;
    let nobody = "nobody-here@my-project.iam.gserviceaccount.com";
    for p in [x509_path(nobody), jwk_path(nobody)] {
        let reply = call(server.addr, Method::GET, &p).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
        assert_eq!(reply.body["error"]["code"], 404);
        assert_eq!(reply.body["error"]["status"], "NOT_FOUND");
        assert_eq!(
            reply.body["error"]["message"],
            format!("Service account {nobody} not found")
        );
    }
    // An account created while serving is found at once (the 404 was not cached).
    cli.create_account("nobody-here", "my-project", NOW)
        .unwrap();
    let reply = call(server.addr, Method::GET, &jwk_path(nobody)).await;
    assert_eq!(reply.status, StatusCode::OK);

    for p in [
        "/",
        "/robot/v1/metadata/x509/",
        "/service_accounts/v1/jwk/a/b",
        "/favicon.ico",
    ] {
        let reply = call(server.addr, Method::GET, p).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(reply.body["error"]["code"], 404);
    }
    let reply = call(server.addr, Method::DELETE, &jwk_path(nobody)).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    // The API-key check takes POST only (tests/api_key_check.rs has the rest).
    let reply = call(
        server.addr,
        Method::GET,
        "/v1/services/bookstore.example.com:check",
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

#[tokio::test]
async fn an_unusable_store_fails_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", iam::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = iam::serve(testkit::listener().await, &path, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, iam::IamError::StoreTooNew { .. }), "{err:?}");
}

/// A key server keeps serving while another esprit migrates its store: once the schema version
/// is newer than this build's, its lookups (checked again every `schema_check`) and its write
/// transactions refuse the store instead of misreading it, and nothing is written.
async fn a_store_migrated_by_a_newer_esprit_is_refused_while_serving(ts: TestStore) {
    let (mut cli, email) = setup(&ts);
    let key = cli
        .create_key(
            &email,
            KeyAlgorithm::Es256,
            &KeyServerUrl::default(),
            &ts.file("k.json"),
            NOW,
        )
        .unwrap();
    let settings = PoolSettings {
        schema_check: Duration::ZERO,
        ..PoolSettings::default()
    };
    let pool = StorePool::open(ts.location(), settings).unwrap();
    let server = KeyServer::start_pool(Arc::clone(&pool)).await;
    let served = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(kids(&served.body), vec![key.key_id.clone()]);

    ts.set_schema_version(SCHEMA_VERSION + 1);
    for path in [jwk_path(&email), x509_path(&email)] {
        let refused = call(server.addr, Method::GET, &path).await;
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    let err = pool.with_store(|_| Ok(())).await.unwrap_err();
    assert!(
        matches!(err, IamError::StoreTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    // A connection opened before the migration refuses to write (in a write transaction).
    let other = cli
        .create_account("other-account", "my-project", NOW)
        .unwrap()
        .email;
    let err = cli.grant_role(&other, Role::ServiceAccountTokenCreator, &email, NOW);
    assert!(matches!(err, Err(IamError::StoreTooNew { .. })), "{err:?}");
    ts.set_schema_version(SCHEMA_VERSION);
    assert!(
        cli.role_bindings(&BindingFilter::default())
            .unwrap()
            .is_empty()
    );
    // Back at this build's version (as in a rollback of the migration), it serves again.
    let served = call(server.addr, Method::GET, &jwk_path(&email)).await;
    assert_eq!(served.status, StatusCode::OK);
    server.stop().await;
}

testkit::store_tests!(async:
    serves_both_documents_and_follows_the_store,
    unknown_accounts_and_paths_are_json_404s,
    a_store_migrated_by_a_newer_esprit_is_refused_while_serving,
);
