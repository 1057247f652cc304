//! The token service's Rust API on a temporary store: ID tokens, access tokens, signJwt keys,
//! the KEK check. (Endpoints over sockets are in `token_endpoints.rs`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, UNIX_EPOCH};

use iam::{Account, IamError, Kek, Store, TokenService, TokenServiceSettings};
use serde_json::{Map, Value, json};

const START: u64 = 1_800_000_000;
const ISSUER: &str = "http://127.0.0.1:9/";

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Account) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    let account = Store::open(&path)
        .unwrap()
        .create_account("token-user", "my-project", START)
        .unwrap();
    (dir, path, account)
}

fn settings(kek: &Kek, clock: &clock::ManualClock) -> TokenServiceSettings {
    TokenServiceSettings {
        rotation: Duration::from_secs(24 * 3600),
        clock: clock.shared(),
        ..TokenServiceSettings::new(ISSUER, kek.clone())
    }
}

fn manual_clock() -> clock::ManualClock {
    clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(START))
}

fn verify(token: &str, keys: &str) -> jose::Claims {
    let set = jose::KeySet::parse(keys.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    jwt.claims().clone()
}

#[test]
fn id_tokens_carry_the_specified_claims_and_verify_against_both_documents() {
    let (_dir, path, account) = setup();
    let kek = Kek::generate().unwrap();
    let clock = manual_clock();
    let service = TokenService::open(&path, settings(&kek, &clock)).unwrap();
    assert_eq!(service.issuer_url(), "http://127.0.0.1:9");

    let token = service
        .issue_id_token(&account, "https://svc.example.com", true)
        .unwrap();
    for doc in [service.jwks().unwrap(), service.x509_map().unwrap()] {
        let claims = verify(&token, &doc);
        assert_eq!(
            Value::Object(claims.all),
            json!({
                "iss": "http://127.0.0.1:9", "aud": "https://svc.example.com",
                "sub": account.unique_id, "azp": account.unique_id,
                "email": account.email, "email_verified": true,
                "iat": START, "exp": START + 3600,
            })
        );
    }
    let header = jose::Jwt::parse(&token).unwrap().header().clone();
    assert_eq!(header.alg, jose::Algorithm::RS256);
    let kid = header.kid.unwrap().0;
    let jwks: Value = serde_json::from_str(&service.jwks().unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(jwks["keys"][0]["use"], "sig");
    let x509: Value = serde_json::from_str(&service.x509_map().unwrap()).unwrap();
    assert!(x509.get(&kid).is_some());

    let without_email = service.issue_id_token(&account, "aud-2", false).unwrap();
    let claims = verify(&without_email, &service.jwks().unwrap());
    assert!(!claims.all.contains_key("email"));
    assert!(!claims.all.contains_key("email_verified"));
}

#[test]
fn access_tokens_round_trip_expire_and_die_with_the_account() {
    let (_dir, path, account) = setup();
    let clock = manual_clock();
    let service = TokenService::open(&path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
    let scopes = vec!["https://www.googleapis.com/auth/iam".to_owned()];
    let (token, expires) = service
        .issue_access_token(&account, &scopes, Duration::from_secs(600))
        .unwrap();
    assert_eq!(expires, START + 600);
    assert!(token.starts_with(iam::token::ACCESS_TOKEN_PREFIX));
    assert_eq!(
        service.access_token_owner(&token).unwrap(),
        Some((account.clone(), scopes.clone()))
    );
    assert_eq!(service.access_token_owner("esprit-at.nope").unwrap(), None);
    assert_eq!(service.access_token_owner("").unwrap(), None);
    for secs in [0, 3601] {
        assert!(matches!(
            service.issue_access_token(&account, &scopes, Duration::from_secs(secs)),
            Err(IamError::AccessTokenLifetime { secs: s }) if s == secs
        ));
    }
    // Expired.
    clock.advance(Duration::from_secs(600));
    assert_eq!(service.access_token_owner(&token).unwrap(), None);
    // Deleted account.
    let (token, _) = service
        .issue_access_token(&account, &scopes, Duration::from_secs(3600))
        .unwrap();
    assert!(service.access_token_owner(&token).unwrap().is_some());
    Store::open(&path)
        .unwrap()
        .delete_account(&account.email)
        .unwrap();
    assert_eq!(service.access_token_owner(&token).unwrap(), None);
    assert!(matches!(
        service.issue_access_token(&account, &scopes, Duration::from_secs(60)),
        Err(IamError::UnknownAccount(_))
    ));
}

#[test]
fn sign_jwt_as_uses_one_published_server_managed_key_per_account() {
    let (_dir, path, account) = setup();
    let clock = manual_clock();
    let service = TokenService::open(&path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
    let mut claims = Map::new();
    claims.insert("iss".into(), account.email.clone().into());
    claims.insert("custom".into(), json!({"a": [1]}));
    let (kid, jwt) = service.sign_jwt_as(&account, &claims).unwrap();
    let (kid2, _) = service.sign_jwt_as(&account, &claims).unwrap();
    assert_eq!(kid, kid2);
    let store = Store::open(&path).unwrap();
    let served = store.served_keys(&account.email).unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].key_id, kid);
    let got = verify(&jwt, &iam::render::jwks(&served).unwrap());
    assert_eq!(Value::Object(got.all), Value::Object(claims));
    verify(&jwt, &iam::render::x509_map(&served));
    assert_eq!(
        jose::Jwt::parse(&jwt)
            .unwrap()
            .header()
            .kid
            .as_ref()
            .unwrap()
            .0,
        kid
    );
}

#[test]
fn a_store_with_managed_keys_refuses_another_kek() {
    let (_dir, path, _account) = setup();
    let clock = manual_clock();
    let kek = Kek::generate().unwrap();
    // A store without server-managed keys accepts any KEK.
    assert!(TokenService::open(&path, settings(&kek, &clock)).is_ok());
    let other = Kek::generate().unwrap();
    let err = TokenService::open(&path, settings(&other, &clock)).unwrap_err();
    assert!(matches!(err, IamError::KekMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the key-encryption key does not match the IAM store"),
        "{err}"
    );
    assert!(TokenService::open(&path, settings(&kek, &clock)).is_ok());
}

#[test]
fn expired_access_token_rows_are_purged_as_new_tokens_are_issued() {
    let (_dir, path, account) = setup();
    let clock = manual_clock();
    let service = TokenService::open(&path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
    let rows = || -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM access_tokens", [], |r| r.get(0))
            .unwrap()
    };
    for _ in 0..3 {
        service
            .issue_access_token(&account, &[], Duration::from_secs(10))
            .unwrap();
    }
    assert_eq!(rows(), 3);
    clock.advance(Duration::from_secs(10));
    let (live, _) = service
        .issue_access_token(&account, &[], Duration::from_secs(10))
        .unwrap();
    assert_eq!(rows(), 1);
    assert!(service.access_token_owner(&live).unwrap().is_some());
    // The store keeps the token's SHA-256, not the token.
    let stored: Vec<u8> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT token_hash FROM access_tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(
        !std::fs::read(&path)
            .unwrap()
            .windows(live.len())
            .any(|w| w == live.as_bytes())
    );
}
