//! The token service's endpoints over real sockets: `iam::serve_tokens` on 127.0.0.1:0 (through
//! testkit), assertions signed with key files made by the store, tokens verified with jose
//! against the served certificates; what depends on the store runs on both backends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

use iam::{Account, Kek, KeyAlgorithm, KeyServerUrl, KeyStatus, Store, TokenServiceSettings};
use serde_json::{Value, json};
use testkit::{KeyServer, TestStore, http1, post_form};

const GOOGLE_AUD: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Fixture {
    ts: TestStore,
    clock: clock::ManualClock,
    server: KeyServer,
    tokens: iam::TokenService,
    account: Account,
    key_file: jose::ServiceAccountKey,
}

fn key_file(store: &mut Store, dir: &Path, email: &str, name: &str) -> jose::ServiceAccountKey {
    let out = dir.join(name);
    store
        .create_key(
            email,
            KeyAlgorithm::Rs256,
            &KeyServerUrl::default(),
            &out,
            1,
        )
        .unwrap();
    jose::ServiceAccountKey::from_json(&std::fs::read_to_string(out).unwrap()).unwrap()
}

async fn fixture(ts: TestStore) -> Fixture {
    let mut store = Store::open(ts.location()).unwrap();
    let account = store.create_account("token-user", "my-project", 1).unwrap();
    let key_file = key_file(&mut store, ts.dir(), &account.email, "key.json");
    let clock = clock::ManualClock::starting_now();
    let shared = clock.shared();
    let (server, tokens) = KeyServer::start_tokens(ts.location(), |url| TokenServiceSettings {
        clock: shared,
        ..TokenServiceSettings::new(url, Kek::generate().unwrap())
    })
    .await;
    Fixture {
        ts,
        clock,
        server,
        tokens,
        account,
        key_file,
    }
}

impl Fixture {
    fn now(&self) -> u64 {
        use clock::Clock as _;
        self.clock.unix_secs()
    }

    /// The claims google-auth's IDTokenCredentials sends, at the fixture's `now`.
    fn id_claims(&self, audience: &str) -> Value {
        let now = self.now();
        json!({"iss": self.account.email, "aud": GOOGLE_AUD, "iat": now, "exp": now + 3600,
               "target_audience": audience})
    }

    fn sign(&self, key: &jose::ServiceAccountKey, kid: &str, claims: &Value) -> String {
        jose::Signer::from_service_account(key)
            .unwrap()
            .sign_jwt(Some(kid), jose::Algorithm::RS256, claims)
            .unwrap()
    }

    fn assertion(&self, claims: &Value) -> String {
        self.sign(&self.key_file, &self.key_file.private_key_id, claims)
    }

    async fn token(&self, form: &[(&str, &str)]) -> testkit::HttpReply {
        post_form(self.server.addr, "/token", form).await
    }

    async fn grant(&self, assertion: &str) -> testkit::HttpReply {
        self.token(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
            .await
    }

    async fn get(&self, path: &str) -> testkit::HttpReply {
        http1(self.server.addr, "GET", path, &[], Vec::new()).await
    }
}

fn verify(token: &str, doc: &str) -> jose::Claims {
    let set = jose::KeySet::parse(doc.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    jwt.claims().clone()
}

async fn id_tokens_verify_against_both_published_documents(ts: TestStore) {
    let f = fixture(ts).await;
    let reply = f
        .grant(&f.assertion(&f.id_claims("https://svc.example.com")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let token = body["id_token"].as_str().unwrap();

    let jwks = f.get("/oauth2/v3/certs").await;
    let x509 = f.get("/oauth2/v1/certs").await;
    for doc in [&jwks, &x509] {
        assert_eq!(doc.status, 200);
        assert_eq!(doc.header("cache-control"), "public, max-age=300");
        let now = f.now();
        let claims = verify(token, &doc.body);
        assert_eq!(
            Value::Object(claims.all),
            json!({"iss": f.server.url(), "aud": "https://svc.example.com",
                   "sub": f.account.unique_id, "azp": f.account.unique_id,
                   "email": f.account.email, "email_verified": true,
                   "iat": now, "exp": now + 3600})
        );
    }
    let kid = jose::Jwt::parse(token)
        .unwrap()
        .header()
        .kid
        .clone()
        .unwrap()
        .0;
    let jwk = &jwks.json()["keys"][0];
    assert_eq!(
        (
            jwk["kid"].as_str(),
            jwk["kty"].as_str(),
            jwk["alg"].as_str(),
            jwk["use"].as_str()
        ),
        (Some(kid.as_str()), Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(jwk["n"].is_string() && jwk["e"] == "AQAB");
    assert!(
        x509.json()
            .get(&kid)
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    // The token endpoint's own URL is an accepted audience too.
    let mut claims = f.id_claims("aud-2");
    claims["aud"] = format!("{}/token", f.server.url()).into();
    assert_eq!(f.grant(&f.assertion(&claims)).await.status, 200);
}

#[tokio::test]
async fn discovery_names_the_issuer_and_its_endpoints() {
    let f = fixture(TestStore::sqlite()).await;
    let reply = f.get("/.well-known/openid-configuration").await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    let issuer = f.server.url();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["jwks_uri"], format!("{issuer}/oauth2/v3/certs"));
    assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    for claim in [
        "iss",
        "aud",
        "sub",
        "email",
        "email_verified",
        "azp",
        "iat",
        "exp",
    ] {
        assert!(
            doc["claims_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(claim)),
            "{claim}"
        );
    }
}

#[tokio::test]
async fn without_a_token_service_its_paths_are_404() {
    let ts = TestStore::sqlite();
    let server = KeyServer::start(ts.location()).await;
    for (method, path) in [
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/oauth2/v3/certs"),
        ("GET", "/oauth2/v1/certs"),
        ("POST", "/token"),
    ] {
        let reply = http1(server.addr, method, path, &[], Vec::new()).await;
        assert_eq!(reply.status, 404, "{method} {path}");
    }
}

async fn access_tokens_round_trip_and_die_with_the_account(ts: TestStore) {
    let f = fixture(ts).await;
    let now = f.now();
    let claims = json!({"iss": f.account.email, "aud": GOOGLE_AUD, "iat": now, "exp": now + 3600,
                        "scope": "https://www.googleapis.com/auth/iam openid"});
    let reply = f.grant(&f.assertion(&claims)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (account, scopes) = f.tokens.access_token_owner(&token).unwrap().unwrap();
    assert_eq!(account, f.account);
    assert_eq!(scopes, ["https://www.googleapis.com/auth/iam", "openid"]);
    Store::open(f.ts.location())
        .unwrap()
        .delete_account(&f.account.email)
        .unwrap();
    assert_eq!(f.tokens.access_token_owner(&token).unwrap(), None);
}

/// What the `error_description` of each refusal of the table below says.
const REASONS: &[(&str, &str)] = &[
    (
        "bad signature (another private key, the account's kid)",
        "Invalid JWT Signature.",
    ),
    ("unknown kid", "kid is not an enabled key of the account"),
    ("disabled key", "kid is not an enabled key of the account"),
    ("deleted account", "account not found"),
    ("expired assertion", "Token must be a short-lived token"),
    ("iat in the future", "Token must be a short-lived token"),
    ("wrong aud", "aud must be"),
    ("lifetime over 1 h", "Token must be a short-lived token"),
    ("sub differs from iss", "no delegation"),
    ("no kid", "must name the key"),
    ("not a JWT", "Invalid JWT: "),
    ("both target_audience and scope", "not both"),
    ("empty scope, no target_audience", "Empty or missing scope"),
    ("missing assertion", "assertion is required"),
    ("oversize body", "larger than 65536 bytes"),
];

async fn refusals_are_400_with_the_oauth_error_and_no_token(ts: TestStore) {
    let f = fixture(ts).await;
    let dir = f.ts.dir();
    let mut store = Store::open(f.ts.location()).unwrap();
    let email = f.account.email.clone();
    // A second key, disabled; an account that is then deleted; a key the store never saw.
    let disabled = key_file(&mut store, dir, &email, "disabled.json");
    store
        .set_key_state(&email, &disabled.private_key_id, KeyStatus::Disabled)
        .unwrap();
    let gone = store.create_account("gone-user", "my-project", 1).unwrap();
    let gone_key = key_file(&mut store, dir, &gone.email, "gone.json");
    store.delete_account(&gone.email).unwrap();
    let stranger = jose::generate_rsa_2048().unwrap();
    let stranger_key =
        jose::ServiceAccountKey::new_google("p", &email, "1", "k", &stranger.private_pkcs8_pem);

    let now = f.now();
    let ok = f.id_claims("https://svc.example.com");
    let with = |changes: Value| {
        let mut claims = ok.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let own = |claims: &Value| f.assertion(claims);
    let kid = f.key_file.private_key_id.clone();
    let oversize = "a".repeat(70 * 1024);

    /// Description, form fields besides grant_type, expected `error`.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "bad signature (another private key, the account's kid)",
            vec![("assertion", f.sign(&stranger_key, &kid, &ok))],
            "invalid_grant",
        ),
        (
            "unknown kid",
            vec![("assertion", f.sign(&f.key_file, &"0".repeat(40), &ok))],
            "invalid_grant",
        ),
        (
            "disabled key",
            vec![(
                "assertion",
                f.sign(&disabled, &disabled.private_key_id, &ok),
            )],
            "invalid_grant",
        ),
        (
            "deleted account",
            vec![(
                "assertion",
                f.sign(
                    &gone_key,
                    &gone_key.private_key_id,
                    &with(json!({"iss": gone.email})),
                ),
            )],
            "invalid_grant",
        ),
        (
            "expired assertion",
            vec![(
                "assertion",
                own(&with(json!({"iat": now - 7200, "exp": now - 3600}))),
            )],
            "invalid_grant",
        ),
        (
            "iat in the future",
            vec![(
                "assertion",
                own(&with(json!({"iat": now + 600, "exp": now + 1200}))),
            )],
            "invalid_grant",
        ),
        (
            "wrong aud",
            vec![(
                "assertion",
                own(&with(json!({"aud": "https://elsewhere.example.com/token"}))),
            )],
            "invalid_grant",
        ),
        (
            "lifetime over 1 h",
            vec![(
                "assertion",
                own(&with(json!({"iat": now, "exp": now + 3601}))),
            )],
            "invalid_grant",
        ),
        (
            "sub differs from iss",
            vec![(
                "assertion",
                own(&with(json!({"sub": "someone@example.com"}))),
            )],
            "invalid_grant",
        ),
        (
            "no kid",
            vec![("assertion", {
                let signer = jose::Signer::from_service_account(&f.key_file).unwrap();
                signer.sign_jwt(None, jose::Algorithm::RS256, &ok).unwrap()
            })],
            "invalid_grant",
        ),
        (
            "not a JWT",
            vec![("assertion", "not.a.jwt".into())],
            "invalid_grant",
        ),
        (
            "both target_audience and scope",
            vec![("assertion", own(&with(json!({"scope": "openid"}))))],
            "invalid_request",
        ),
        (
            "empty scope, no target_audience",
            vec![(
                "assertion",
                own(&with(json!({"target_audience": null, "scope": ""}))),
            )],
            "invalid_scope",
        ),
        ("missing assertion", vec![], "invalid_request"),
        (
            "oversize body",
            vec![("assertion", oversize)],
            "invalid_request",
        ),
    ];
    for (desc, extra, want) in cases {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", JWT_BEARER)];
        form.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let reply = f.token(&form).await;
        assert_eq!(reply.status, 400, "{desc}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"], want, "{desc}: {body}");
        // Each refusal is for its own reason.
        let why = body["error_description"].as_str().unwrap();
        let reason = REASONS.iter().find(|(d, _)| *d == desc).unwrap().1;
        assert!(why.contains(reason), "{desc}: {why}");
        assert!(body["error_description"].is_string(), "{desc}");
        assert!(
            body.get("id_token").is_none() && body.get("access_token").is_none(),
            "{desc}"
        );
        assert_eq!(reply.header("cache-control"), "no-store", "{desc}");
    }
    let good = own(&ok);
    for (desc, form, want) in [
        (
            "wrong grant_type",
            vec![
                ("grant_type", "client_credentials"),
                ("assertion", good.as_str()),
            ],
            "unsupported_grant_type",
        ),
        (
            "missing grant_type",
            vec![("assertion", good.as_str())],
            "invalid_request",
        ),
        (
            "repeated assertion",
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", good.as_str()),
                ("assertion", good.as_str()),
            ],
            "invalid_request",
        ),
    ] {
        let reply = f.token(&form).await;
        assert_eq!(reply.status, 400, "{desc}: {}", reply.body);
        assert_eq!(reply.json()["error"], want, "{desc}");
    }
    // The well-made request passes, so every refusal above is its own change's doing.
    assert_eq!(f.grant(&good).await.status, 200);
}

async fn sign_jwt_as_keys_are_served_with_the_accounts_keys(ts: TestStore) {
    let f = fixture(ts).await;
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), f.account.email.clone().into());
    claims.insert("aud".into(), "https://svc.example.com".into());
    let (kid, jwt) = f.tokens.sign_jwt_as(&f.account, &claims).unwrap();
    let email = f.account.email.replace('@', "%40");
    let jwks = f.get(&format!("/service_accounts/v1/jwk/{email}")).await;
    let x509 = f.get(&format!("/robot/v1/metadata/x509/{email}")).await;
    for doc in [&jwks, &x509] {
        assert_eq!(doc.status, 200);
        assert_eq!(
            Value::Object(verify(&jwt, &doc.body).all),
            Value::Object(claims.clone())
        );
    }
    // Beside the key file's key, which stays served.
    assert_eq!(x509.json().as_object().unwrap().len(), 2);
    assert!(x509.json().get(&kid).is_some());
    assert!(x509.json().get(&f.key_file.private_key_id).is_some());
    // Not a token-service key.
    let service = f.get("/oauth2/v3/certs").await;
    assert!(!service.body.contains(&kid));
}

testkit::store_tests!(async:
    id_tokens_verify_against_both_published_documents,
    access_tokens_round_trip_and_die_with_the_account,
    refusals_are_400_with_the_oauth_error_and_no_token,
    sign_jwt_as_keys_are_served_with_the_accounts_keys,
);
