//! Authenticated API-key checks over real sockets: the key server with `CheckAuth::Required`
//! on 127.0.0.1:0, accounts, key files, role bindings and API keys made through a second store
//! connection (as the CLI would) while it serves, on both store backends; callers' JWTs signed
//! with the key files, and token-service access tokens.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use iam::{CheckAuth, Kek, KeyAlgorithm, KeyServerUrl, KeyStatus, ServiceRole, Store};
use keycheck::{CALLER_AUDIENCE, CheckResponse};
use serde_json::{Value, json};
use testkit::{HttpReply, KeyServer, TestStore, http1};

const SERVICE: &str = "bookstore.endpoints.my-project.cloud.goog";
const OTHER_SERVICE: &str = "other.endpoints.my-project.cloud.goog";
const CHECK: &str = "/v1/services/bookstore.endpoints.my-project.cloud.goog:check";
const SC: ServiceRole = ServiceRole::ServiceController;

struct Fixture {
    ts: TestStore,
    store: Store,
    clock: clock::ManualClock,
}

impl Fixture {
    fn new(ts: TestStore) -> Fixture {
        let store = Store::open(ts.location()).unwrap();
        Fixture {
            ts,
            store,
            clock: clock::ManualClock::starting_now(),
        }
    }

    fn now(&self) -> u64 {
        use clock::Clock as _;
        self.clock.unix_secs()
    }

    /// An account `name` with an RS256 key file; (email, key file).
    fn account(&mut self, name: &str) -> (String, jose::ServiceAccountKey) {
        let now = self.now();
        let email = self
            .store
            .create_account(name, "my-project", now)
            .unwrap()
            .email;
        let out = self.ts.file(&format!("{name}.json"));
        self.store
            .create_key(
                &email,
                KeyAlgorithm::Rs256,
                &KeyServerUrl::default(),
                &out,
                now,
            )
            .unwrap();
        (email, read_key_file(&out))
    }
}

fn read_key_file(path: &Path) -> jose::ServiceAccountKey {
    jose::ServiceAccountKey::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A caller JWT signed with `key` over `claims`.
fn sign(key: &jose::ServiceAccountKey, claims: &Value) -> String {
    jose::Signer::from_service_account(key)
        .unwrap()
        .sign_jwt(Some(&key.private_key_id), jose::Algorithm::RS256, claims)
        .unwrap()
}

/// The caller JWT the proxy sends, issued at `iat`.
fn caller_jwt(key: &jose::ServiceAccountKey, iat: u64) -> String {
    sign(key, &keycheck::caller_claims(&key.client_email, iat))
}

/// A check of `key` on `path` with `authorization` (none if `None`).
async fn check_on(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
    key: &str,
) -> HttpReply {
    let mut headers = vec![("content-type", "application/json")];
    let value;
    if let Some(token) = authorization {
        value = format!("Bearer {token}");
        headers.push(("authorization", value.as_str()));
    }
    let body = json!({ "api_key": key }).to_string().into_bytes();
    http1(addr, "POST", path, &headers, body).await
}

async fn check(addr: SocketAddr, authorization: Option<&str>, key: &str) -> HttpReply {
    check_on(addr, CHECK, authorization, key).await
}

/// Asserts a refusal: `status` in Google's error shape, with `WWW-Authenticate: Bearer` on 401.
fn assert_refused(what: &str, reply: &HttpReply, status: u16, message_part: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], status, "{what}");
    let want_status = if status == 401 {
        "UNAUTHENTICATED"
    } else {
        "PERMISSION_DENIED"
    };
    assert_eq!(error["status"], want_status, "{what}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(message_part), "{what}: {message}");
    if status == 401 {
        assert_eq!(reply.header("www-authenticate"), "Bearer", "{what}");
    }
    // A refusal says nothing about the key.
    assert!(
        reply.json().get("valid").is_none(),
        "{what}: {}",
        reply.body
    );
}

fn answer(reply: &HttpReply) -> CheckResponse {
    assert_eq!(reply.status, 200, "{}", reply.body);
    CheckResponse::from_json(reply.body.as_bytes()).unwrap()
}

async fn checks_answer_only_callers_holding_the_role_on_that_service(ts: TestStore) {
    let mut fx = Fixture::new(ts);
    let (proxy, proxy_key) = fx.account("proxy-one");
    let (_lacking, lacking_key) = fx.account("no-role-one");
    let (elsewhere, elsewhere_key) = fx.account("elsewhere-one");
    let (gone, gone_key) = fx.account("deleted-one");
    let (disabled, disabled_key) = fx.account("disabled-one");
    let now = fx.now();
    for member in [&proxy, &gone, &disabled] {
        fx.store
            .grant_service_role(member, SC, SERVICE, now)
            .unwrap();
    }
    fx.store
        .grant_service_role(&elsewhere, SC, OTHER_SERVICE, now)
        .unwrap();
    fx.store.delete_account(&gone).unwrap();
    fx.store
        .set_key_state(&disabled, &disabled_key.private_key_id, KeyStatus::Disabled)
        .unwrap();
    let (api_key, _) = fx
        .store
        .create_api_key("consumer-project", None, now)
        .unwrap();

    let server = KeyServer::start_checked(
        fx.ts.location(),
        None,
        CheckAuth::Required(fx.clock.shared()),
    )
    .await;
    let addr = server.addr;

    // 401: no token, or one that does not prove an account.
    let expired = caller_jwt(&proxy_key, now - 2 * 3600);
    let wrong_audience = sign(
        &proxy_key,
        &json!({"iss": proxy, "sub": proxy, "aud": format!("{}/", server.url()),
                "iat": now, "exp": now + 3600}),
    );
    let token_endpoint_audience = sign(
        &proxy_key,
        &json!({"iss": proxy, "sub": proxy, "aud": "https://oauth2.googleapis.com/token",
                "iat": now, "exp": now + 3600}),
    );
    let forged = {
        // Claims the proxy's account, signed by another account's key under the proxy's kid.
        let mut key = lacking_key.clone();
        key.private_key_id = proxy_key.private_key_id.clone();
        sign(&key, &keycheck::caller_claims(&proxy, now))
    };
    let unauthenticated: &[(&str, Option<&str>, &str)] = &[
        (
            "no token",
            None,
            "missing required authentication credential",
        ),
        ("garbage", Some("garbage"), "not an access token nor a JWT"),
        ("expired", Some(&expired), "short-lived"),
        (
            "wrong audience: the server's URL",
            Some(&wrong_audience),
            CALLER_AUDIENCE,
        ),
        (
            "wrong audience: the token endpoint",
            Some(&token_endpoint_audience),
            CALLER_AUDIENCE,
        ),
        ("forged signature", Some(&forged), "invalid JWT signature"),
        (
            "unknown account",
            Some(&caller_jwt(&gone_key, now)),
            "not an enabled key",
        ),
        (
            "disabled key",
            Some(&caller_jwt(&disabled_key, now)),
            "not an enabled key",
        ),
        (
            "unknown access token",
            Some("esprit-at.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "invalid authentication credentials",
        ),
    ];
    for (what, token, message) in unauthenticated {
        let reply = check(addr, *token, &api_key).await;
        assert_refused(what, &reply, 401, message);
    }
    // A header that is not a bearer is no credential.
    let basic = http1(
        addr,
        "POST",
        CHECK,
        &[
            ("content-type", "application/json"),
            ("authorization", "Basic dTpw"),
        ],
        json!({ "api_key": api_key }).to_string().into_bytes(),
    )
    .await;
    assert_refused("basic auth", &basic, 401, "missing required authentication");

    // 403: a valid caller without the role on THIS service.
    let denied: &[(&str, &jose::ServiceAccountKey)] = &[
        ("no role", &lacking_key),
        ("role on another service", &elsewhere_key),
    ];
    for (what, key) in denied {
        let reply = check(addr, Some(&caller_jwt(key, now)), &api_key).await;
        assert_refused(
            what,
            &reply,
            403,
            &format!(
                "serviceAccount:{} does not hold roles/servicemanagement.serviceController on \
                 services/{SERVICE}",
                key.client_email
            ),
        );
    }
    // ... and the one with a role elsewhere is answered there.
    let other_check = format!("/v1/services/{OTHER_SERVICE}:check");
    let there = check_on(
        addr,
        &other_check,
        Some(&caller_jwt(&elsewhere_key, now)),
        &api_key,
    )
    .await;
    assert!(answer(&there).is_valid());

    // 200: the right role; the key decision as before.
    let token = caller_jwt(&proxy_key, now);
    assert_eq!(
        answer(&check(addr, Some(&token), &api_key).await),
        CheckResponse::Valid {
            consumer_project: "consumer-project".into()
        }
    );
    assert_eq!(
        answer(&check(addr, Some(&token), "AIzaNotAKeyAnyoneIssued").await),
        CheckResponse::Invalid
    );
    // Within the skew, at the end of the token's hour; refused after it.
    fx.clock.advance(Duration::from_secs(3600 + 60));
    assert!(answer(&check(addr, Some(&token), &api_key).await).is_valid());
    fx.clock.advance(Duration::from_secs(2));
    assert_refused(
        "expired by the server's clock",
        &check(addr, Some(&token), &api_key).await,
        401,
        "short-lived",
    );
    let token = caller_jwt(&proxy_key, fx.now());

    // Revoking the role refuses the next check: bindings are not cached.
    fx.store.revoke_service_role(&proxy, SC, SERVICE).unwrap();
    assert_refused(
        "revoked",
        &check(addr, Some(&token), &api_key).await,
        403,
        "does not hold",
    );
    fx.store
        .grant_service_role(&proxy, SC, SERVICE, now)
        .unwrap();
    assert!(answer(&check(addr, Some(&token), &api_key).await).is_valid());

    // The public-key documents stay public.
    let path = format!(
        "/robot/v1/metadata/x509/{}",
        iam::encode_path_segment(&proxy)
    );
    let keys = http1(addr, "GET", &path, &[], Vec::new()).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert!(keys.json().get(&proxy_key.private_key_id).is_some());
    server.stop().await;
}

async fn token_service_access_tokens_need_a_check_scope_and_the_role(ts: TestStore) {
    let mut fx = Fixture::new(ts);
    let (proxy, _) = fx.account("proxy-one");
    let (lacking, _) = fx.account("no-role-one");
    let now = fx.now();
    fx.store
        .grant_service_role(&proxy, SC, SERVICE, now)
        .unwrap();
    let (api_key, _) = fx
        .store
        .create_api_key("consumer-project", None, now)
        .unwrap();
    let tokens = iam::TokenService::open(
        fx.ts.location(),
        iam::TokenServiceSettings {
            clock: fx.clock.shared(),
            ..iam::TokenServiceSettings::new("http://127.0.0.1:1", Kek::generate().unwrap())
        },
    )
    .unwrap();
    let issue = |email: &str, scope: &str| {
        let account = fx.store.account(email).unwrap();
        tokens
            .issue_access_token(&account, &[scope.to_owned()], Duration::from_secs(600))
            .unwrap()
            .0
    };
    let controller = issue(&proxy, "https://www.googleapis.com/auth/servicecontrol");
    let platform = issue(&proxy, "https://www.googleapis.com/auth/cloud-platform");
    let iam_only = issue(&proxy, "https://www.googleapis.com/auth/iam");
    let lacking_token = issue(&lacking, "https://www.googleapis.com/auth/cloud-platform");
    let server = KeyServer::start_checked(
        fx.ts.location(),
        Some(tokens.clone()),
        CheckAuth::Required(fx.clock.shared()),
    )
    .await;
    let addr = server.addr;
    for token in [&controller, &platform] {
        assert!(answer(&check(addr, Some(token), &api_key).await).is_valid());
    }
    assert_refused(
        "scope without servicecontrol",
        &check(addr, Some(&iam_only), &api_key).await,
        403,
        "insufficient authentication scopes",
    );
    assert_refused(
        "no role",
        &check(addr, Some(&lacking_token), &api_key).await,
        403,
        "does not hold",
    );
    // Expired with the token service's clock.
    fx.clock.advance(Duration::from_secs(601));
    assert_refused(
        "expired access token",
        &check(addr, Some(&controller), &api_key).await,
        401,
        "invalid authentication credentials",
    );
    server.stop().await;

    // A key server without the token service takes no access token.
    let token = issue(&proxy, "https://www.googleapis.com/auth/servicecontrol");
    let server = KeyServer::start_checked(
        fx.ts.location(),
        None,
        CheckAuth::Required(fx.clock.shared()),
    )
    .await;
    assert_refused(
        "access token without a token service",
        &check(server.addr, Some(&token), &api_key).await,
        401,
        "invalid authentication credentials",
    );
    server.stop().await;
}

async fn with_check_auth_off_anyone_is_answered_as_before(ts: TestStore) {
    let mut fx = Fixture::new(ts);
    let now = fx.now();
    let (api_key, _) = fx
        .store
        .create_api_key("consumer-project", None, now)
        .unwrap();
    let server = KeyServer::start_checked(fx.ts.location(), None, CheckAuth::Off).await;
    assert!(answer(&check(server.addr, None, &api_key).await).is_valid());
    // A token is not looked at.
    assert!(answer(&check(server.addr, Some("garbage"), &api_key).await).is_valid());
    server.stop().await;
}

testkit::store_tests!(async:
    checks_answer_only_callers_holding_the_role_on_that_service,
    token_service_access_tokens_need_a_check_scope_and_the_role,
    with_check_auth_off_anyone_is_answered_as_before,
);
