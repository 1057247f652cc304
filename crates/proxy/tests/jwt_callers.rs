//! `x_esprit_allowed_callers` end to end: a token service (an issuer that signs ID tokens for
//! many accounts, its keys found by OpenID discovery) and a self-signed service account (keys
//! at its X.509 map), both served by a local key server; the proxy; the echo backend; tonic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use echo::pb::EchoRequest;
use jose::GeneratedKey;
use keysets::test_server::{KeyServer, Reply, jwks, x509_map};
use serde_json::{Value, json};
use service_config::ServiceConfig;
use tonic::{Code, Request};

const SERVICE: &str = "echo.example.com";
/// Listed on `Unary`.
const CLIENT: &str = "client@proj.iam.gserviceaccount.com";
/// Not listed anywhere.
const OTHER: &str = "other@proj.iam.gserviceaccount.com";
/// The self-signed account: the issuer of provider `self`.
const ACCOUNT: &str = "signer@proj.iam.gserviceaccount.com";

/// - `Unary`: the token service, listing `CLIENT`; or the self-signed account `ACCOUNT`,
///   listing `CLIENT` too (an operator who thinks the `email` claim names the caller);
/// - `ServerStream`: the token service without a list (ESP: every account);
/// - `ClientStream`, `Bidi`: the token service listing `CLIENT` with the domain in capitals.
fn config(issuer: &str, x509: &str) -> ServiceConfig {
    echo_service(&format!(
        r#"
type: google.api.Service
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: esprit_token_service
    issuer: {issuer}
  - id: self
    issuer: {ACCOUNT}
    jwks_uri: {x509}
  rules:
  - selector: "*"
    requirements:
    - provider_id: esprit_token_service
      audiences: {SERVICE}
      x_esprit_allowed_callers: [client@PROJ.IAM.gserviceaccount.com]
  - selector: esprit.echo.v1.Echo.Unary
    requirements:
    - provider_id: esprit_token_service
      x_esprit_allowed_callers: [{CLIENT}]
    - provider_id: self
      x_esprit_allowed_callers: [{CLIENT}]
  - selector: esprit.echo.v1.Echo.ServerStream
    requirements:
    - provider_id: esprit_token_service
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Stack {
    _keys: KeyServer,
    issuer: String,
    service_key: GeneratedKey,
    account_key: GeneratedKey,
    _backend: echo::RunningServer,
    proxy: RunningProxy,
}

impl Stack {
    async fn start() -> Stack {
        let keys = KeyServer::start().await.unwrap();
        let service_key = jose::generate_rsa_2048().unwrap();
        let account_key = jose::generate_rsa_2048().unwrap();
        // The token service: OpenID discovery, then its JWKS.
        let issuer = keys.url("/ts");
        keys.set(
            "/ts/.well-known/openid-configuration",
            Reply::json(json!({"issuer": issuer, "jwks_uri": keys.url("/ts/certs")}).to_string()),
        );
        keys.set("/ts/certs", Reply::json(jwks(&[("ts-1", &service_key)])));
        // The self-signed account: Google's X.509 map of its keys.
        let x509_path = format!("/robot/v1/metadata/x509/{ACCOUNT}");
        keys.set(
            &x509_path,
            Reply::json(x509_map(&[("acct-1", &account_key)]).unwrap()),
        );
        let backend = start_echo().await;
        let proxy = RunningProxy::start(
            &config(&issuer, &keys.url(&x509_path)),
            settings(backend.addr()),
        )
        .await;
        Stack {
            _keys: keys,
            issuer,
            service_key,
            account_key,
            _backend: backend,
            proxy,
        }
    }

    /// An ID token as the token service signs it for `email` (Google's shape).
    fn id_token(&self, email: &str, changes: Value) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "aud": SERVICE, "sub": "112233445566", "azp": "112233445566",
            "email": email, "email_verified": true, "iat": now, "exp": now + 3600,
        });
        merge(&mut claims, changes);
        sign(&self.service_key, "ts-1", &claims)
    }

    /// A JWT the account signs itself (`iss` = `sub` = its email), with `changes` merged in.
    fn self_signed(&self, changes: Value) -> String {
        let now = now();
        let mut claims = json!({
            "iss": ACCOUNT, "sub": ACCOUNT, "email": ACCOUNT, "aud": SERVICE,
            "iat": now, "exp": now + 3600,
        });
        merge(&mut claims, changes);
        sign(&self.account_key, "acct-1", &claims)
    }
}

fn merge(claims: &mut Value, changes: Value) {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
}

fn sign(key: &GeneratedKey, kid: &str, claims: &Value) -> String {
    key.signer()
        .unwrap()
        .sign_jwt(Some(kid), key.algorithm, claims)
        .unwrap()
}

/// A unary call with `token`; `Ok` carries the `x-endpoint-api-userinfo` the backend received.
async fn unary(url: String, token: &str) -> Result<String, tonic::Status> {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest {
        payload: Bytes::from_static(b"p"),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let response = client.unary(request).await?.into_inner();
    Ok(response
        .metadata
        .get("x-endpoint-api-userinfo")
        .cloned()
        .unwrap_or_default())
}

#[tokio::test]
async fn only_listed_callers_pass_and_the_rest_get_permission_denied() {
    let s = Stack::start().await;
    let not_allowed = (Code::PermissionDenied, "Caller in Jwt is not allowed");
    let unidentified = (
        Code::PermissionDenied,
        "Jwt has no verified email to identify the caller",
    );
    // (desc, token, None to pass or the refusal's code and message)
    type Want = Option<(Code, &'static str)>;
    let table: Vec<(&str, String, Want)> = vec![
        (
            "token service: listed caller",
            s.id_token(CLIENT, json!({})),
            None,
        ),
        (
            "token service: unlisted caller",
            s.id_token(OTHER, json!({})),
            Some(not_allowed),
        ),
        (
            "token service: email missing",
            s.id_token(CLIENT, json!({"email": null})),
            Some(unidentified),
        ),
        (
            "token service: email not verified",
            s.id_token(CLIENT, json!({"email_verified": false})),
            Some(unidentified),
        ),
        (
            "token service: email_verified missing",
            s.id_token(CLIENT, json!({"email_verified": null})),
            Some(unidentified),
        ),
        (
            "forgery: the self-signed account writes the listed email; its caller is its issuer",
            s.self_signed(json!({"email": CLIENT, "email_verified": true})),
            Some(not_allowed),
        ),
        (
            "forgery: the account signs a token in the token service's name",
            sign(
                &s.account_key,
                "acct-1",
                &json!({"iss": s.issuer, "aud": SERVICE, "email": CLIENT,
                        "email_verified": true, "iat": now(), "exp": now() + 3600}),
            ),
            Some((
                Code::Unauthenticated,
                "Jwks doesn't have key to match kid or alg from Jwt",
            )),
        ),
        (
            "forgery: the account reuses the token service's kid",
            sign(
                &s.account_key,
                "ts-1",
                &json!({"iss": s.issuer, "aud": SERVICE, "email": CLIENT,
                        "email_verified": true, "iat": now(), "exp": now() + 3600}),
            ),
            Some((Code::Unauthenticated, "Jwt verification fails")),
        ),
    ];
    for (desc, token, want) in table {
        let got = unary(s.proxy.url(), &token).await;
        match (got, want) {
            (Ok(userinfo), None) => {
                // The backend saw the token's payload: the caller check let it through intact.
                assert_eq!(userinfo, token.split('.').nth(1).unwrap(), "{desc}");
            }
            (Ok(_), Some(want)) => panic!("{desc}: passed, want {want:?}"),
            (Err(status), None) => panic!("{desc}: {status:?}"),
            (Err(status), Some((code, message))) => {
                assert_eq!(status.code(), code, "{desc}: {status:?}");
                assert_eq!(status.message(), message, "{desc}");
            }
        }
    }
}

/// The wire answer as bytes: trailers-only, `grpc-status` 7, and the insufficient-scope
/// challenge; the domain of a listed caller compares case-insensitively.
#[tokio::test]
async fn the_answer_on_the_wire_and_the_domain_case() {
    let s = Stack::start().await;
    let path = "/esprit.echo.v1.Echo/ClientStream";
    let bearer = |token: String| format!("Bearer {token}");

    let other = bearer(s.id_token(OTHER, json!({})));
    let refused = raw_grpc_call(s.proxy.addr, path, &[("authorization", &other)]).await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.grpc_status(), Some(7));
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer, error=\"insufficient_scope\""
    );
    // grpc-message is percent-encoded (gRPC over HTTP/2).
    assert_eq!(
        refused.headers["grpc-message"],
        "Caller%20in%20Jwt%20is%20not%20allowed"
    );

    // Listed as `client@PROJ.IAM.gserviceaccount.com`.
    let client = bearer(s.id_token(CLIENT, json!({})));
    let passed = raw_grpc_call(s.proxy.addr, path, &[("authorization", &client)]).await;
    assert_eq!(passed.grpc_status(), Some(0));
}

/// Without `x_esprit_allowed_callers` every account the token service signs for may call, with
/// or without an email: today's behaviour, unchanged.
#[tokio::test]
async fn without_a_list_every_account_passes() {
    let s = Stack::start().await;
    let path = "/esprit.echo.v1.Echo/ServerStream";
    for token in [
        s.id_token(CLIENT, json!({})),
        s.id_token(OTHER, json!({})),
        s.id_token(OTHER, json!({"email": null, "email_verified": null})),
    ] {
        let bearer = format!("Bearer {token}");
        let response = raw_grpc_call(s.proxy.addr, path, &[("authorization", &bearer)]).await;
        assert_eq!(response.grpc_status(), Some(0));
    }
}
