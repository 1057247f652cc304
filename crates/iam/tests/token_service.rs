//! The token service's Rust API on a temporary store, on both backends: ID tokens, access
//! tokens, signJwt keys, the KEK check. (Endpoints over sockets are in `token_endpoints.rs`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, UNIX_EPOCH};

use iam::{Account, IamError, Kek, Store, TokenService, TokenServiceSettings};
use serde_json::{Map, Value, json};
use testkit::{Backend, TestStore};

const START: u64 = 1_800_000_000;
const ISSUER: &str = "http://127.0.0.1:9/";

fn setup(ts: &TestStore) -> Account {
    Store::open(ts.location())
        .unwrap()
        .create_account("token-user", "my-project", START)
        .unwrap()
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

fn id_tokens_carry_the_specified_claims_and_verify_against_both_documents(ts: TestStore) {
    let account = setup(&ts);
    let path = ts.location();
    let kek = Kek::generate().unwrap();
    let clock = manual_clock();
    let service = TokenService::open(path, settings(&kek, &clock)).unwrap();
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

fn access_tokens_round_trip_expire_and_die_with_the_account(ts: TestStore) {
    let account = setup(&ts);
    let path = ts.location();
    let clock = manual_clock();
    let service = TokenService::open(path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
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
    Store::open(path)
        .unwrap()
        .delete_account(&account.email)
        .unwrap();
    assert_eq!(service.access_token_owner(&token).unwrap(), None);
    assert!(matches!(
        service.issue_access_token(&account, &scopes, Duration::from_secs(60)),
        Err(IamError::UnknownAccount(_))
    ));
}

fn sign_jwt_as_uses_one_published_server_managed_key_per_account(ts: TestStore) {
    let account = setup(&ts);
    let path = ts.location();
    let clock = manual_clock();
    let service = TokenService::open(path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
    let mut claims = Map::new();
    claims.insert("iss".into(), account.email.clone().into());
    claims.insert("custom".into(), json!({"a": [1]}));
    let (kid, jwt) = service.sign_jwt_as(&account, &claims).unwrap();
    let (kid2, _) = service.sign_jwt_as(&account, &claims).unwrap();
    assert_eq!(kid, kid2);
    let store = Store::open(path).unwrap();
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

fn a_store_with_managed_keys_refuses_another_kek(ts: TestStore) {
    setup(&ts);
    let path = ts.location();
    let clock = manual_clock();
    let kek = Kek::generate().unwrap();
    // A store without server-managed keys accepts any KEK.
    assert!(TokenService::open(path, settings(&kek, &clock)).is_ok());
    let other = Kek::generate().unwrap();
    let err = TokenService::open(path, settings(&other, &clock)).unwrap_err();
    assert!(matches!(err, IamError::KekMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the key-encryption key does not match the IAM store"),
        "{err}"
    );
    assert!(TokenService::open(path, settings(&kek, &clock)).is_ok());
}

fn expired_access_token_rows_are_purged_as_new_tokens_are_issued(ts: TestStore) {
    let account = setup(&ts);
    let path = ts.location();
    let clock = manual_clock();
    let service = TokenService::open(path, settings(&Kek::generate().unwrap(), &clock)).unwrap();
    let rows = || ts.query_raw("SELECT CAST(count(*) AS TEXT) FROM access_tokens");
    for _ in 0..3 {
        service
            .issue_access_token(&account, &[], Duration::from_secs(10))
            .unwrap();
    }
    assert_eq!(rows(), ["3"]);
    clock.advance(Duration::from_secs(10));
    let (live, _) = service
        .issue_access_token(&account, &[], Duration::from_secs(10))
        .unwrap();
    assert_eq!(rows(), ["1"]);
    assert!(service.access_token_owner(&live).unwrap().is_some());
    // The store keeps the token's SHA-256, not the token.
    let stored = ts.query_raw(match ts.backend {
        Backend::Sqlite => "SELECT lower(hex(token_hash)) FROM access_tokens",
        Backend::Postgres => "SELECT encode(token_hash, 'hex') FROM access_tokens",
    });
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, live.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(stored, [hex]);
    let columns =
        ts.query_raw("SELECT scopes FROM access_tokens UNION ALL SELECT email FROM access_tokens");
    assert!(columns.iter().all(|c| !c.contains(&live)), "{columns:?}");
    if let Some(file) = ts.sqlite_path() {
        assert!(
            !std::fs::read(file)
                .unwrap()
                .windows(live.len())
                .any(|w| w == live.as_bytes())
        );
    }
}

testkit::store_tests!(
    id_tokens_carry_the_specified_claims_and_verify_against_both_documents,
    access_tokens_round_trip_expire_and_die_with_the_account,
    sign_jwt_as_uses_one_published_server_managed_key_per_account,
    a_store_with_managed_keys_refuses_another_kek,
    expired_access_token_rows_are_purged_as_new_tokens_are_issued,
);
