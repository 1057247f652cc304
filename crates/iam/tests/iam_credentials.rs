//! The IAM Credentials API's three methods over real sockets, on both store backends: the key
//! server with its token service (`testkit::KeyServer::start_tokens`, a ManualClock), bearer
//! access tokens from the token service, role bindings written to the store as the CLI writes
//! them; tokens verified against the served documents; and google-auth, unmodified, through
//! esprit. (Refusals: `iam_credentials_refusals.rs`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod credentials_support;

use std::path::PathBuf;

use credentials_support::{IAM_SCOPE, START, TC, World, get, path, verify};
use hyper::StatusCode;
use iam::{Account, Kek, Store, TokenServiceSettings, encode_path_segment};
use serde_json::{Value, json};
use testkit::{KeyServer, TestStore};

async fn the_three_methods_succeed_with_the_role(ts: TestStore) {
    let w = World::new(ts).await;
    let caller = w.account("caller-one");
    let target = w.account("target-one");
    let delegate = w.account("delegate-one");
    w.grant(&caller, &target);
    let auth = w.bearer(&caller, 3600);
    let issuer = w.server.url();
    let certs = get(w.server.addr, "/oauth2/v3/certs").await;
    let x509 = get(w.server.addr, "/oauth2/v1/certs").await;

    // generateIdToken, includeEmail as a boolean and as a string.
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "generateIdToken"),
            json!({"audience": "https://svc.example.com", "includeEmail": true, "delegates": null}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let token = reply.body["token"].as_str().unwrap();
    for doc in [&certs, &x509] {
        let claims = verify(token, doc);
        assert_eq!(claims.all["iss"], json!(issuer));
        assert_eq!(claims.all["aud"], json!("https://svc.example.com"));
        assert_eq!(claims.all["sub"], json!(target.unique_id));
        assert_eq!(claims.all["email"], json!(target.email));
        assert_eq!(claims.all["email_verified"], json!(true));
        assert_eq!(claims.all["exp"], json!(START + 3600));
        assert_eq!(claims.all["azp"], json!(target.unique_id));
    }
    let reply = w
        .post(
            Some(&auth),
            &path(&encode_path_segment(&target.email), "generateIdToken"),
            json!({"audience": "a", "includeEmail": "false", "useEmailAzp": "true"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let claims = verify(reply.body["token"].as_str().unwrap(), &certs);
    assert!(claims.all.get("email").is_none(), "{:?}", claims.all);
    // useEmailAzp: `azp` is the email (`sub` stays the unique id).
    assert_eq!(claims.all["azp"], json!(target.email));
    assert_eq!(claims.all["sub"], json!(target.unique_id));

    // generateAccessToken: Google's expireTime, and the token is a bearer of the target.
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "generateAccessToken"),
            json!({"scope": [IAM_SCOPE], "lifetime": "600s", "delegates": null}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["expireTime"], json!("2027-01-15T08:10:00Z"));
    let target_auth = format!("Bearer {}", reply.body["accessToken"].as_str().unwrap());
    assert_eq!(
        w.tokens
            .access_token_owner(reply.body["accessToken"].as_str().unwrap())
            .unwrap()
            .map(|(a, s)| (a.email, s)),
        Some((target.email.clone(), vec![IAM_SCOPE.to_owned()]))
    );
    // The target may not act as itself without the role, and may with it.
    let self_call = json!({"audience": "https://svc.example.com"});
    let reply = w
        .post(
            Some(&target_auth),
            &path(&target.email, "generateIdToken"),
            self_call.clone(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED")
    );
    w.grant(&target, &target);
    let reply = w
        .post(
            Some(&target_auth),
            &path(&target.email, "generateIdToken"),
            self_call,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // signJwt: verifies against the account's own JWKS and X.509 map; exp added when absent.
    let payload = json!({"iss": target.email, "sub": target.email, "aud": "https://svc.example.com",
                         "iat": START, "exp": START + 300});
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "signJwt"),
            json!({"payload": payload.to_string(), "delegates": []}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let signed = reply.body["signedJwt"].as_str().unwrap();
    let key_id = reply.body["keyId"].as_str().unwrap();
    let jwk = get(
        w.server.addr,
        &format!(
            "/service_accounts/v1/jwk/{}",
            encode_path_segment(&target.email)
        ),
    )
    .await;
    let x509 = get(
        w.server.addr,
        &format!(
            "/robot/v1/metadata/x509/{}",
            encode_path_segment(&target.email)
        ),
    )
    .await;
    for doc in [&jwk, &x509] {
        assert_eq!(Value::Object(verify(signed, doc).all), payload);
    }
    let header = jose::Jwt::parse(signed).unwrap().header().clone();
    assert_eq!(header.kid.unwrap().0, key_id);
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "signJwt"),
            json!({"payload": "{\"a\":1}"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let claims = verify(reply.body["signedJwt"].as_str().unwrap(), &jwk);
    assert_eq!(
        Value::Object(claims.all),
        json!({"a": 1, "exp": START + 3600})
    );

    // A delegation chain: caller → delegate → target.
    let delegated = json!({"audience": "a", "delegates": [
        format!("projects/-/serviceAccounts/{}", delegate.email)]});
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "generateIdToken"),
            delegated.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    w.grant(&caller, &delegate);
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "generateIdToken"),
            delegated.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    w.grant(&delegate, &target);
    let reply = w
        .post(
            Some(&auth),
            &path(&target.email, "generateIdToken"),
            delegated,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// A key file for `account` whose `token_uri` is the token service's `/token`, so google-auth
/// refreshes through esprit.
fn local_key_file(ts: &TestStore, account: &Account, token_uri: &str) -> PathBuf {
    let out = ts.file(&format!("{}.json", account.account_id));
    Store::open(ts.location())
        .unwrap()
        .create_key_with_token_uri(
            &account.email,
            iam::KeyAlgorithm::Rs256,
            &iam::KeyServerUrl::default(),
            Some(token_uri),
            &out,
            START,
        )
        .unwrap();
    out
}

/// google-auth, unmodified: impersonated_credentials.Credentials (generateAccessToken) and
/// IDTokenCredentials (generateIdToken) against esprit, their fixed host routed to the local
/// server by a requests adapter; signJwt output verified by PyJWT against the account's JWKS;
/// a caller without the role gets RefreshError. (The interoperability, on SQLite only.)
#[tokio::test]
async fn google_auth_impersonates_through_esprit() {
    let ts = TestStore::sqlite();
    let (caller, target, lonely) = {
        let mut s = Store::open(ts.location()).unwrap();
        let mut make = |name: &str| s.create_account(name, "my-project", START).unwrap();
        (make("caller-one"), make("target-one"), make("lonely-one"))
    };
    Store::open(ts.location())
        .unwrap()
        .grant_role(&caller.email, TC, &target.email, START)
        .unwrap();
    // Python runs on the real clock: so does this token service.
    let (server, _tokens) = KeyServer::start_tokens(ts.location(), |url| {
        TokenServiceSettings::new(url, Kek::generate().unwrap())
    })
    .await;
    let url = server.url();
    let token_uri = format!("{url}/token");
    let caller_key = local_key_file(&ts, &caller, &token_uri);
    let lonely_key = local_key_file(&ts, &lonely, &token_uri);
    let jwks = format!(
        "{url}/service_accounts/v1/jwk/{}",
        encode_path_segment(&target.email)
    );
    let allowed = {
        let (key, url, target, jwks) = (
            caller_key.to_str().unwrap().to_owned(),
            url.clone(),
            target.email.clone(),
            jwks.clone(),
        );
        tokio::task::spawn_blocking(move || {
            testkit::run_python(
                "iam_impersonate.py",
                &[
                    "allowed",
                    &key,
                    &url,
                    &target,
                    "https://svc.example.com",
                    &url,
                    &jwks,
                ],
            )
        })
    };
    let refused = {
        let (key, url, target) = (
            lonely_key.to_str().unwrap().to_owned(),
            url.clone(),
            target.email.clone(),
        );
        tokio::task::spawn_blocking(move || {
            testkit::run_python("iam_impersonate.py", &["refused", &key, &url, &target])
        })
    };
    let allowed = allowed.await.unwrap();
    testkit::assert_success("iam_impersonate.py allowed", &allowed);
    assert_eq!(
        String::from_utf8_lossy(&allowed.stdout).trim(),
        "impersonated"
    );
    let refused = refused.await.unwrap();
    testkit::assert_success("iam_impersonate.py refused", &refused);
    assert_eq!(String::from_utf8_lossy(&refused.stdout).trim(), "refused");
    server.stop().await;
}

testkit::store_tests!(async: the_three_methods_succeed_with_the_role);
