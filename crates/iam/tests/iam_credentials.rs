//! The IAM Credentials API over real sockets: the key server with its token service
//! (`testkit::KeyServer::start_tokens`, a ManualClock), bearer access tokens from the token
//! service, role bindings written to the store as the CLI writes them, and a plain HTTP/1.1
//! client. Every refusal is asserted by status and Google's `error.status`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use iam::{Account, Kek, Role, Store, TokenService, TokenServiceSettings, encode_path_segment};
use serde_json::{Value, json};
use testkit::KeyServer;

const START: u64 = 1_800_000_000;
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
const TC: Role = Role::ServiceAccountTokenCreator;

struct Reply {
    status: StatusCode,
    www_authenticate: Option<String>,
    body: Value,
}

impl Reply {
    fn error_status(&self) -> &str {
        self.body["error"]["status"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 request on a new connection (testkit's client); the body must be JSON.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let reply = testkit::http1(
        addr,
        method.as_str(),
        path,
        &headers,
        body.unwrap_or_default(),
    )
    .await;
    let www_authenticate = reply
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    Reply {
        status: StatusCode::from_u16(reply.status).unwrap(),
        www_authenticate,
        body: reply.json(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let reply = testkit::http1(addr, "GET", path, &[], Vec::new()).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.body
}

fn path(email: &str, method: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}:{method}")
}

struct World {
    _dir: tempfile::TempDir,
    store: PathBuf,
    clock: clock::ManualClock,
    server: KeyServer,
    tokens: TokenService,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        Store::open(&store).unwrap();
        let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
        let shared = clock.shared();
        let (server, tokens) = KeyServer::start_tokens(&store, move |url| TokenServiceSettings {
            clock: shared,
            ..TokenServiceSettings::new(url, Kek::generate().unwrap())
        })
        .await;
        World {
            _dir: dir,
            store,
            clock,
            server,
            tokens,
        }
    }

    fn account(&self, name: &str) -> Account {
        Store::open(&self.store)
            .unwrap()
            .create_account(name, "my-project", START)
            .unwrap()
    }

    fn grant(&self, member: &Account, resource: &Account) {
        Store::open(&self.store)
            .unwrap()
            .grant_role(&member.email, TC, &resource.email, START)
            .unwrap();
    }

    fn revoke(&self, member: &Account, resource: &Account) {
        Store::open(&self.store)
            .unwrap()
            .revoke_role(&member.email, TC, &resource.email)
            .unwrap();
    }

    /// `Bearer …`: an access token of `account` with the `iam` scope.
    fn bearer(&self, account: &Account, lifetime: u64) -> String {
        self.bearer_with(account, &[IAM_SCOPE], lifetime)
    }

    fn bearer_with(&self, account: &Account, scopes: &[&str], lifetime: u64) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let (token, _) = self
            .tokens
            .issue_access_token(account, &scopes, Duration::from_secs(lifetime))
            .unwrap();
        format!("Bearer {token}")
    }

    async fn post(&self, auth: Option<&str>, path: &str, body: Value) -> Reply {
        send(
            self.server.addr,
            Method::POST,
            path,
            auth,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn post_raw(&self, auth: Option<&str>, path: &str, body: &[u8]) -> Reply {
        send(
            self.server.addr,
            Method::POST,
            path,
            auth,
            Some(body.to_vec()),
        )
        .await
    }
}

fn verify(token: &str, keys: &str) -> jose::Claims {
    let set = jose::KeySet::parse(keys.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    jwt.claims().clone()
}

#[tokio::test]
async fn refusals_over_sockets() {
    let w = World::new().await;
    let caller = w.account("caller-one");
    let target = w.account("target-one");
    let other = w.account("other-one");
    let delegate = w.account("delegate-one");
    let lonely = w.account("lonely-one");
    let revoked = w.account("revoked-one");
    w.grant(&caller, &other); // a role on another account
    w.grant(&caller, &delegate); // the chain's first link, not its last
    w.grant(&revoked, &target);
    w.revoke(&revoked, &target);
    // The user role grants nothing.
    Store::open(&w.store)
        .unwrap()
        .grant_role(
            &lonely.email,
            Role::ServiceAccountUser,
            &target.email,
            START,
        )
        .unwrap();

    let id_token = json!({"audience": "https://svc.example.com"});
    let caller_auth = w.bearer(&caller, 3600);
    let lonely_auth = w.bearer(&lonely, 3600);
    let revoked_auth = w.bearer(&revoked, 3600);
    let no_iam_scope = w.bearer_with(
        &caller,
        &["https://www.googleapis.com/auth/userinfo.email"],
        3600,
    );
    let delegates = json!({"audience": "a", "delegates": [
        format!("projects/-/serviceAccounts/{}", delegate.email)]});
    let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
    let denied_id = "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it \
                     may not exist).";

    struct Case<'a> {
        name: &'a str,
        auth: Option<&'a str>,
        target: &'a str,
        method: &'a str,
        body: Value,
        status: StatusCode,
        error: &'a str,
    }
    let t = target.email.as_str();
    let cases = [
        Case {
            name: "no bearer",
            auth: None,
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::UNAUTHORIZED,
            error: "UNAUTHENTICATED",
        },
        Case {
            name: "not a bearer",
            auth: Some("Basic dXNlcjpwdw=="),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::UNAUTHORIZED,
            error: "UNAUTHENTICATED",
        },
        Case {
            name: "unknown bearer",
            auth: Some("Bearer esprit-at.nope"),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::UNAUTHORIZED,
            error: "UNAUTHENTICATED",
        },
        Case {
            name: "an ID token is no bearer",
            auth: Some("Bearer eyJhbGciOiJSUzI1NiJ9.e30.x"),
            target: t,
            method: "signJwt",
            body: json!({"payload": "{}"}),
            status: StatusCode::UNAUTHORIZED,
            error: "UNAUTHENTICATED",
        },
        Case {
            name: "bearer without the iam scope",
            auth: Some(&no_iam_scope),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "missing role",
            auth: Some(&lonely_auth),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "missing role, access token",
            auth: Some(&lonely_auth),
            target: t,
            method: "generateAccessToken",
            body: json!({"scope": [IAM_SCOPE]}),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "missing role, signJwt",
            auth: Some(&lonely_auth),
            target: t,
            method: "signJwt",
            body: json!({"payload": "{}"}),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "role on another account",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "revoked role",
            auth: Some(&revoked_auth),
            target: t,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "delegate chain missing its last link",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: delegates.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "caller is target, no role on itself",
            auth: Some(&lonely_auth),
            target: &lonely.email,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "unknown target",
            auth: Some(&caller_auth),
            target: ghost,
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "not an email",
            auth: Some(&caller_auth),
            target: "12345",
            method: "generateIdToken",
            body: id_token.clone(),
            status: StatusCode::FORBIDDEN,
            error: "PERMISSION_DENIED",
        },
        Case {
            name: "missing audience",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: json!({}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "includeEmail not a boolean",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: json!({"audience": "a", "includeEmail": "yes"}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "unknown member",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: json!({"audience": "a", "extra": 1}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "ill-formed delegate",
            auth: Some(&caller_auth),
            target: t,
            method: "generateIdToken",
            body: json!({"audience": "a", "delegates": [delegate.email.clone()]}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "no scope",
            auth: Some(&caller_auth),
            target: t,
            method: "generateAccessToken",
            body: json!({"scope": []}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "lifetime over 1 h",
            auth: Some(&caller_auth),
            target: t,
            method: "generateAccessToken",
            body: json!({"scope": [IAM_SCOPE], "lifetime": "3601s"}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "payload not an object",
            auth: Some(&caller_auth),
            target: t,
            method: "signJwt",
            body: json!({"payload": "[1]"}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "exp over 12 h",
            auth: Some(&caller_auth),
            target: t,
            method: "signJwt",
            body: json!({"payload": json!({"exp": START + 12 * 3600 + 1}).to_string()}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
        Case {
            name: "exp in the past",
            auth: Some(&caller_auth),
            target: t,
            method: "signJwt",
            body: json!({"payload": json!({"exp": START - 1}).to_string()}),
            status: StatusCode::BAD_REQUEST,
            error: "INVALID_ARGUMENT",
        },
    ];
    let mut denied_messages = Vec::new();
    for case in &cases {
        let reply = w
            .post(
                case.auth,
                &path(case.target, case.method),
                case.body.clone(),
            )
            .await;
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        assert_eq!(
            reply.error_status(),
            case.error,
            "{}: {}",
            case.name,
            reply.body
        );
        assert_eq!(
            reply.body["error"]["code"],
            json!(case.status.as_u16()),
            "{}",
            case.name
        );
        assert!(reply.body["error"]["message"].is_string(), "{}", case.name);
        if case.status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                reply.www_authenticate.as_deref(),
                Some("Bearer"),
                "{}",
                case.name
            );
        }
        if case.method == "generateIdToken"
            && case.error == "PERMISSION_DENIED"
            && case.name != "bearer without the iam scope"
        {
            denied_messages.push((case.name, reply.body["error"]["message"].clone()));
        }
    }
    // An unknown account is answered exactly as one the caller has no role on.
    for (name, message) in denied_messages {
        assert_eq!(message, json!(denied_id), "{name}");
    }

    // Body framing: not JSON, too large, a project other than `-`, a GET.
    let reply = w
        .post_raw(
            Some(&caller_auth),
            &path(t, "generateIdToken"),
            b"{not json",
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let big = vec![b' '; iam::iam_credentials::BODY_LIMIT + 1];
    let reply = w
        .post_raw(Some(&caller_auth), &path(t, "signJwt"), &big)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(reply.error_status(), "INVALID_ARGUMENT");
    let reply = w
        .post(
            Some(&caller_auth),
            &format!("/v1/projects/my-project/serviceAccounts/{t}:generateIdToken"),
            id_token.clone(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let reply = send(
        w.server.addr,
        Method::GET,
        &path(t, "generateIdToken"),
        Some(&caller_auth),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = w
        .post(
            Some(&caller_auth),
            &path(t, "signBlob"),
            json!({"payload": "eA=="}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
}

#[tokio::test]
async fn an_expired_bearer_and_a_deleted_callers_bearer_are_unauthenticated() {
    let w = World::new().await;
    let caller = w.account("caller-one");
    let target = w.account("target-one");
    w.grant(&caller, &target);
    let short = w.bearer(&caller, 60);
    let body = json!({"audience": "https://svc.example.com"});
    let reply = w
        .post(
            Some(&short),
            &path(&target.email, "generateIdToken"),
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    w.clock.advance(Duration::from_secs(61));
    let reply = w
        .post(
            Some(&short),
            &path(&target.email, "generateIdToken"),
            body.clone(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );

    // Deleting the caller kills its tokens and its bindings.
    let long = w.bearer(&caller, 3600);
    let reply = w
        .post(
            Some(&long),
            &path(&target.email, "generateIdToken"),
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut store = Store::open(&w.store).unwrap();
    store.delete_account(&caller.email).unwrap();
    assert!(
        store
            .role_bindings(&iam::BindingFilter::default())
            .unwrap()
            .is_empty()
    );
    let reply = w
        .post(Some(&long), &path(&target.email, "generateIdToken"), body)
        .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn the_three_methods_succeed_with_the_role() {
    let w = World::new().await;
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

#[tokio::test]
async fn without_a_token_service_the_api_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    Store::open(&store).unwrap();
    let server = KeyServer::start(&store).await;
    let reply = send(
        server.addr,
        Method::POST,
        &path(
            "a-b-c-d@my-project.iam.gserviceaccount.com",
            "generateIdToken",
        ),
        Some("Bearer x"),
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(
        (reply.status, reply.error_status()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    server.stop().await;
}

/// A key file for `account` whose `token_uri` is the token service's `/token`, so google-auth
/// refreshes through esprit.
fn local_key_file(
    store: &std::path::Path,
    dir: &std::path::Path,
    account: &Account,
    token_uri: &str,
) -> PathBuf {
    let out = dir.join(format!("{}.json", account.account_id));
    Store::open(store)
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
/// a caller without the role gets RefreshError.
#[tokio::test]
async fn google_auth_impersonates_through_esprit() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    let (caller, target, lonely) = {
        let mut s = Store::open(&store).unwrap();
        let mut make = |name: &str| s.create_account(name, "my-project", START).unwrap();
        (make("caller-one"), make("target-one"), make("lonely-one"))
    };
    Store::open(&store)
        .unwrap()
        .grant_role(&caller.email, TC, &target.email, START)
        .unwrap();
    // Python runs on the real clock: so does this token service.
    let (server, _tokens) = KeyServer::start_tokens(&store, |url| {
        TokenServiceSettings::new(url, Kek::generate().unwrap())
    })
    .await;
    let url = server.url();
    let token_uri = format!("{url}/token");
    let caller_key = local_key_file(&store, dir.path(), &caller, &token_uri);
    let lonely_key = local_key_file(&store, dir.path(), &lonely, &token_uri);
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
