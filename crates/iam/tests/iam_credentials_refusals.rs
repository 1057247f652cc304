//! The IAM Credentials API's refusals over real sockets, on both store backends: the key server
//! with its token service (`testkit::KeyServer::start_tokens`, a ManualClock), bearer access
//! tokens from the token service, role bindings written to the store as the CLI writes them,
//! and a plain HTTP/1.1 client. Every refusal is asserted by status and Google's
//! `error.status`. (What succeeds: `iam_credentials.rs`.)

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod credentials_support;

use std::time::Duration;

use credentials_support::{IAM_SCOPE, START, World, path, send};
use hyper::{Method, StatusCode};
use iam::Role;
use serde_json::{Value, json};
use testkit::{KeyServer, TestStore};

async fn refusals_over_sockets(ts: TestStore) {
    let w = World::new(ts).await;
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
    w.store()
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

async fn an_expired_bearer_and_a_deleted_callers_bearer_are_unauthenticated(ts: TestStore) {
    let w = World::new(ts).await;
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
    let mut store = w.store();
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
async fn without_a_token_service_the_api_is_not_there() {
    let ts = TestStore::sqlite();
    let server = KeyServer::start(ts.location()).await;
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

testkit::store_tests!(async:
    refusals_over_sockets,
    an_expired_bearer_and_a_deleted_callers_bearer_are_unauthenticated,
);
