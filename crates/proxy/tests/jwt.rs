//! JWT authentication end to end: a local key server (rotating, down, slow, garbage), the proxy,
//! the echo backend showing what it received, and real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clock::Clock as _;
use common::*;
use echo::pb::EchoRequest;
use jose::{Algorithm, GeneratedKey};
use keysets::test_server::{KeyServer, Reply, jwks};
use serde_json::json;
use service_config::ServiceConfig;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

const ISSUER: &str = "client@consumer-project.iam.gserviceaccount.com";
const SERVICE: &str = "echo.example.com";

/// Unary and ServerStream need a token; ClientStream allows calls without one; Bidi checks none.
fn jwt_config(jwks_uri: &str) -> ServiceConfig {
    let yaml = format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: consumer
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
  - selector: esprit.echo.v1.Echo.ClientStream
    allow_without_credential: true
    requirements:
    - provider_id: consumer
  - selector: esprit.echo.v1.Echo.Bidi
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    );
    echo_service(&yaml)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> serde_json::Value {
    let now = now();
    json!({"iss": ISSUER, "sub": "12345678", "aud": SERVICE, "iat": now, "exp": now + 3600})
}

fn mint(key: &GeneratedKey, kid: &str, claims: &serde_json::Value) -> String {
    key.signer()
        .unwrap()
        .sign_jwt(Some(kid), key.algorithm, claims)
        .unwrap()
}

struct Stack {
    keys: KeyServer,
    key: GeneratedKey,
    _backend: echo::RunningServer,
    proxy: RunningProxy,
}

async fn stack_with(tune: impl FnOnce(&mut proxy::ProxySettings)) -> Stack {
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    tune(&mut settings);
    let proxy = RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings).await;
    Stack {
        keys,
        key,
        _backend: backend,
        proxy,
    }
}

async fn stack() -> Stack {
    stack_with(|_| {}).await
}

async fn unary(url: String, token: Option<&str>) -> Result<echo::pb::EchoResponse, tonic::Status> {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest {
        payload: Bytes::from_static(b"p"),
        ..Default::default()
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    client.unary(request).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn rejections_over_real_sockets_with_code_and_message() {
    let s = stack().await;
    let other = jose::generate_rsa_2048().unwrap();
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("someone-else.example.com");
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("intruder@evil.iam.gserviceaccount.com");
    let mut https_aud = claims();
    https_aud["aud"] = json!(["https://echo.example.com/", "x"]);
    let mut future = claims();
    future["nbf"] = json!(now() + 3600);

    let table: Vec<(&str, Option<String>, Code, &str)> = vec![
        ("valid", Some(mint(&s.key, "k1", &claims())), Code::Ok, ""),
        (
            "aud https:// with slash, in a list",
            Some(mint(&s.key, "k1", &https_aud)),
            Code::Ok,
            "",
        ),
        ("missing", None, Code::Unauthenticated, "Jwt is missing"),
        (
            "expired",
            Some(mint(&s.key, "k1", &expired)),
            Code::Unauthenticated,
            "Jwt is expired",
        ),
        (
            "not yet valid",
            Some(mint(&s.key, "k1", &future)),
            Code::Unauthenticated,
            "Jwt not yet valid",
        ),
        (
            "wrong audience",
            Some(mint(&s.key, "k1", &wrong_aud)),
            Code::PermissionDenied,
            "Audiences in Jwt are not allowed",
        ),
        (
            "wrong issuer",
            Some(mint(&s.key, "k1", &wrong_iss)),
            Code::Unauthenticated,
            "Jwt issuer is not configured",
        ),
        (
            "signed by another key under our kid",
            Some(mint(&other, "k1", &claims())),
            Code::Unauthenticated,
            "Jwt verification fails",
        ),
        (
            "not a JWT",
            Some("abc.def".into()),
            Code::Unauthenticated,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "alg none",
            Some(format!(
                "eyJhbGciOiJub25lIn0.{}.",
                jose_b64(&claims().to_string())
            )),
            Code::Unauthenticated,
            "Jwt header [alg] is not supported",
        ),
    ];
    for (desc, token, code, message) in table {
        match unary(s.proxy.url(), token.as_deref()).await {
            Ok(reply) => assert_eq!(code, Code::Ok, "{desc}: accepted, got {reply:?}"),
            Err(status) => {
                assert_eq!(status.code(), code, "{desc}: {status:?}");
                assert_eq!(status.message(), message, "{desc}");
                let www = status
                    .metadata()
                    .get("www-authenticate")
                    .unwrap()
                    .to_str()
                    .unwrap();
                let want = if token.is_none() {
                    "Bearer"
                } else {
                    "Bearer, error=\"invalid_token\""
                };
                assert_eq!(www, want, "{desc}");
            }
        }
    }
}

fn jose_b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn the_backend_gets_the_token_and_verified_claims_never_forged_ones() {
    let s = stack().await;
    let token = mint(&s.key, "k1", &claims());
    let mut client = echo_client(s.proxy.url()).await;
    let mut request = Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.metadata_mut().insert(
        "x-endpoint-api-userinfo",
        MetadataValue::from_static("forged"),
    );
    request.metadata_mut().insert(
        "x_endpoint_api_userinfo",
        MetadataValue::from_static("forged"),
    );
    let seen = client.unary(request).await.unwrap().into_inner().metadata;
    assert_eq!(
        seen.get("authorization").unwrap(),
        &format!("Bearer {token}")
    );
    let payload_segment = token.split('.').nth(1).unwrap();
    assert_eq!(
        seen.get("x-endpoint-api-userinfo").unwrap(),
        payload_segment
    );
    assert!(!seen.contains_key("x_endpoint_api_userinfo"));

    // A method without a JWT rule: no claims to vouch for, and forged copies still removed.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "x-endpoint-api-userinfo",
        MetadataValue::from_static("forged"),
    );
    tx.send(EchoRequest::default()).await.unwrap();
    drop(tx);
    let mut replies = client.bidi(request).await.unwrap().into_inner();
    let first = replies.message().await.unwrap().unwrap();
    assert!(
        !first.metadata.contains_key("x-endpoint-api-userinfo"),
        "{:?}",
        first.metadata
    );
}

#[tokio::test]
async fn allow_without_credential_lets_no_token_in_but_not_a_bad_one() {
    let s = stack().await;
    let mut client = echo_client(s.proxy.url()).await;
    let call = |token: Option<String>| {
        let mut client = client.clone();
        async move {
            let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            client.client_stream(request).await
        }
    };
    let reply = call(None).await.unwrap().into_inner();
    assert!(!reply.metadata.contains_key("x-endpoint-api-userinfo"));
    let status = call(Some("not-a-jwt".into())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let reply = call(Some(mint(&s.key, "k1", &claims())))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.metadata.contains_key("x-endpoint-api-userinfo"));
    // Bidi has no requirements: no token needed.
    let mut replies = client
        .bidi(tokio_stream::iter(vec![EchoRequest::default()]))
        .await
        .unwrap()
        .into_inner();
    assert!(replies.message().await.unwrap().is_some());
}

#[tokio::test]
async fn a_rotated_key_works_on_its_first_call() {
    let s = stack().await;
    assert!(
        unary(s.proxy.url(), Some(&mint(&s.key, "k1", &claims())))
            .await
            .is_ok()
    );
    let fetched = s.keys.hits("/jwks");
    // The provider rotates: k2 appears. The proxy's cached set does not have it yet.
    let new_key = jose::generate_es256().unwrap();
    s.keys.set(
        "/jwks",
        Reply::json(jwks(&[("k1", &s.key), ("k2", &new_key)])),
    );
    let reply = unary(s.proxy.url(), Some(&mint(&new_key, "k2", &claims()))).await;
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(s.keys.hits("/jwks"), fetched + 1, "exactly one refetch");
    // A kid nobody has: one refetch, a clear rejection; the same kid again within the
    // refetch interval: no second fetch.
    for _ in 0..3 {
        let status = unary(s.proxy.url(), Some(&mint(&new_key, "k3", &claims())))
            .await
            .unwrap_err();
        assert_eq!(
            status.message(),
            "Jwks doesn't have key to match kid or alg from Jwt"
        );
    }
    assert_eq!(
        s.keys.hits("/jwks"),
        fetched + 2,
        "refetches for one kid are rate-limited"
    );
}

/// Issue 9 item 12: an unknown `kid` (a wrong account's token) right before a rotation does not
/// block the new key's refetch, and a flood of random `kid`s makes at most
/// `--jwks-refetch-limit` fetches.
#[tokio::test]
async fn a_bogus_kid_does_not_block_a_new_key_and_random_kids_cannot_storm() {
    let s = stack_with(|p| p.auth.jwks.refetch_limit = 3).await;
    assert!(
        unary(s.proxy.url(), Some(&mint(&s.key, "k1", &claims())))
            .await
            .is_ok()
    );
    let bogus = jose::generate_es256().unwrap();
    let status = unary(s.proxy.url(), Some(&mint(&bogus, "bogus", &claims())))
        .await
        .unwrap_err();
    assert_eq!(
        status.message(),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    let new_key = jose::generate_es256().unwrap();
    s.keys.set(
        "/jwks",
        Reply::json(jwks(&[("k1", &s.key), ("k2", &new_key)])),
    );
    let reply = unary(s.proxy.url(), Some(&mint(&new_key, "k2", &claims()))).await;
    assert!(
        reply.is_ok(),
        "a new key right after a bogus kid: {reply:?}"
    );

    // 60 tokens with random kids, 20 at a time.
    let before = s.keys.hits("/jwks");
    for round in 0..3 {
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let url = s.proxy.url();
                let token = mint(&bogus, &format!("random-{round}-{i}"), &claims());
                tokio::spawn(async move { unary(url, Some(&token)).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_err());
        }
    }
    let storm = s.keys.hits("/jwks") - before;
    assert!(
        storm <= 3,
        "{storm} fetches for 60 random kids; the limit is 3"
    );
    // Known keys keep working throughout.
    assert!(
        unary(s.proxy.url(), Some(&mint(&new_key, "k2", &claims())))
            .await
            .is_ok()
    );
}

/// Token times are read from the injected clock: a token verified (and cached) is refused once
/// the clock passes its `exp` plus the skew, with no real time passing.
#[tokio::test]
async fn token_times_follow_the_injected_clock() {
    let clock = clock::ManualClock::starting_now();
    let s = stack_with(|settings| settings.clock = clock.shared()).await;
    let start = clock.unix_secs();
    let mut short = claims();
    short["iat"] = json!(start);
    short["exp"] = json!(start + 120);
    let token = mint(&s.key, "k1", &short);
    assert!(unary(s.proxy.url(), Some(&token)).await.is_ok());
    // Cached now; exp + skew (60 s) not yet passed.
    clock.advance(Duration::from_secs(179));
    assert!(unary(s.proxy.url(), Some(&token)).await.is_ok());
    clock.advance(Duration::from_secs(2));
    let status = unary(s.proxy.url(), Some(&token)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Jwt is expired");

    // A token not yet valid by the injected clock is refused, then accepted once it moves.
    let now = clock.unix_secs();
    let mut later = claims();
    later["nbf"] = json!(now + 600);
    later["exp"] = json!(now + 3600);
    let later = mint(&s.key, "k1", &later);
    let status = unary(s.proxy.url(), Some(&later)).await.unwrap_err();
    assert_eq!(status.message(), "Jwt not yet valid");
    clock.advance(Duration::from_secs(600));
    assert!(unary(s.proxy.url(), Some(&later)).await.is_ok());
}

#[tokio::test]
async fn keys_never_fetched_fail_closed() {
    let dead_addr = dead_addr();
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.auth.jwks.fetch_timeout = Duration::from_millis(500);
    let proxy =
        RunningProxy::start(&jwt_config(&format!("http://{dead_addr}/jwks")), settings).await;
    let key = jose::generate_rsa_2048().unwrap();
    let status = unary(proxy.url(), Some(&mint(&key, "k1", &claims())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Jwks remote fetch is failed");
}

#[tokio::test]
async fn the_last_good_keys_survive_an_outage_until_max_stale() {
    let s = stack_with(|settings| {
        settings.auth.jwks.cache_duration = Duration::from_millis(500);
        settings.auth.jwks.max_stale = Duration::from_secs(2);
        settings.auth.jwks.retry_initial = Duration::from_millis(100);
        settings.auth.jwks.retry_max = Duration::from_millis(200);
        settings.auth.jwks.fetch_timeout = Duration::from_millis(300);
    })
    .await;
    let token = mint(&s.key, "k1", &claims());
    assert!(unary(s.proxy.url(), Some(&token)).await.is_ok());
    s.keys.stop().await;
    // Real time on purpose: the key sets' freshness and staleness run on tokio's monotonic
    // clock in background tasks that fetch over sockets, and a paused clock would also fire
    // the proxy's and the client's connection timers.
    // Past cache_duration, refreshes failing: the last good set is still used.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = unary(s.proxy.url(), Some(&token)).await;
    assert!(reply.is_ok(), "stale keys should still verify: {reply:?}");
    // Past cache_duration + max_stale: fail closed.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let status = unary(s.proxy.url(), Some(&token)).await.unwrap_err();
    assert_eq!(status.message(), "Jwks remote fetch is failed");
}

#[tokio::test]
async fn garbage_from_the_key_server_never_replaces_good_keys() {
    let s = stack_with(|settings| {
        settings.auth.jwks.cache_duration = Duration::from_millis(300);
    })
    .await;
    let token = mint(&s.key, "k1", &claims());
    assert!(unary(s.proxy.url(), Some(&token)).await.is_ok());
    let before = s.keys.hits("/jwks");
    s.keys.set(
        "/jwks",
        Reply::json("{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}"),
    );
    // The refresh runs at 80 % of the cache duration (240 ms): wait for it, generously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.keys.hits("/jwks") <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.keys.hits("/jwks") > before,
        "the proxy should have refreshed"
    );
    let reply = unary(s.proxy.url(), Some(&token)).await;
    assert!(reply.is_ok(), "{reply:?}");
}

#[tokio::test]
async fn a_slow_key_server_does_not_hold_the_listener() {
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set(
        "/jwks",
        Reply::slow(
            Duration::from_millis(3000),
            Reply::json(jwks(&[("k1", &key)])),
        ),
    );
    let backend = start_echo().await;
    let started = std::time::Instant::now();
    let proxy =
        RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings(backend.addr())).await;
    // Serving before the keys arrive: a method without a JWT rule answers at once.
    let mut client = echo_client(proxy.url()).await;
    let mut replies = client
        .bidi(tokio_stream::iter(vec![EchoRequest::default()]))
        .await
        .unwrap()
        .into_inner();
    assert!(replies.message().await.unwrap().is_some());
    // Well before the 3 s the key server takes (generous for a loaded CI machine).
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // A token arriving during the first fetch waits for it rather than failing.
    let reply = unary(proxy.url(), Some(&mint(&key, "k1", &claims()))).await;
    assert!(reply.is_ok(), "{reply:?}");
}

#[tokio::test]
async fn valid_and_invalid_tokens_concurrently_on_one_connection() {
    let s = stack().await;
    let good = mint(&s.key, "k1", &claims());
    let mut expired = claims();
    expired["exp"] = json!(now() - 600);
    let bad = mint(&s.key, "k1", &expired);
    let client = echo_client(s.proxy.url()).await;
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let mut client = client.clone();
            let token = if i % 2 == 0 {
                good.clone()
            } else {
                bad.clone()
            };
            tokio::spawn(async move {
                let mut request = Request::new(EchoRequest {
                    payload: Bytes::from(vec![i as u8]),
                    ..Default::default()
                });
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                (i, client.unary(request).await)
            })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(&result.unwrap().into_inner().payload[..], &[i as u8]);
        } else {
            assert_eq!(result.unwrap_err().message(), "Jwt is expired");
        }
    }
}

/// Issue 9, item 5: protocol first. An HTTP/1.1 call to a gRPC method can never be served, so it
/// is answered 415 before any token is looked at: no token, a token for the wrong audience and a
/// junk token all get the same answer, so HTTP/1.1 is no oracle of token validity. (What an
/// HTTP caller would get for a JWT failure — 401/403, JSON, `WWW-Authenticate` — is in the wire
/// table's test.)
#[tokio::test]
async fn http1_callers_get_415_before_any_token_check() {
    let s = stack().await;
    let post = |auth: Option<String>| {
        let auth = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /esprit.echo.v1.Echo/Unary HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        )
    };
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("other");
    for token in [
        None,
        Some(mint(&s.key, "k1", &wrong_aud)),
        Some("junk".to_owned()),
        Some(mint(&s.key, "k1", &claims())),
    ] {
        let (status, head, body) = http1(s.proxy.addr, &post(token.clone())).await;
        assert_eq!(status, 415, "{token:?}");
        assert!(!head.contains("www-authenticate"), "{head}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], 415, "{token:?}");
    }
}

#[tokio::test]
async fn tokens_in_the_query_and_oversized_tokens() {
    let s = stack().await;
    let token = mint(&s.key, "k1", &claims());
    let path = format!("/esprit.echo.v1.Echo/Unary?access_token={token}");
    let ok = raw_grpc_call(s.proxy.addr, &path, &[]).await;
    assert_eq!(ok.grpc_status(), Some(0));

    let mut big = claims();
    big["padding"] = json!("x".repeat(70 * 1024));
    let huge = mint(&s.key, "k1", &big);
    let status = unary(s.proxy.url(), Some(&huge)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with("Jwt is too large"),
        "{}",
        status.message()
    );
}

/// Tokens made by Python's google-auth (from a service-account key file) and PyJWT, for every
/// algorithm family, pass the proxy: our verifier agrees with signers we did not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_python_google_auth_and_pyjwt_pass() {
    let keys = KeyServer::start().await.unwrap();
    let rsa = jose::generate_rsa_2048().unwrap();
    let ec = jose::generate_es256().unwrap();
    let ed = jose::generate_ed25519().unwrap();
    let set = json!({"keys": [
        rsa.public_key().to_jwk(Some("rsa"), None),
        ec.public_key().to_jwk(Some("ec"), Some(Algorithm::ES256)),
        ed.public_key().to_jwk(Some("ed"), Some(Algorithm::EdDSA)),
    ]});
    keys.set("/jwks", Reply::json(set.to_string()));
    let backend = start_echo().await;
    let proxy =
        RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings(backend.addr())).await;

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let key_file = jose::ServiceAccountKey::new_google(
        "consumer-project",
        ISSUER,
        "123456789012345678901",
        "rsa",
        &rsa.private_pkcs8_pem,
    );
    let key_file = write("sa.json", &key_file.to_json());
    let rsa_pem = write("rsa.pem", &rsa.private_pkcs8_pem);
    let ec_pem = write("ec.pem", &ec.private_pkcs8_pem);
    let ed_pem = write("ed.pem", &ed.private_pkcs8_pem);
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "google-auth RS256",
            vec!["google-auth".into(), key_file.clone()],
        ),
        (
            "PyJWT RS256",
            vec![
                "pyjwt".into(),
                rsa_pem.clone(),
                "RS256".into(),
                "rsa".into(),
            ],
        ),
        (
            "PyJWT PS256",
            vec![
                "pyjwt".into(),
                rsa_pem.clone(),
                "PS256".into(),
                "rsa".into(),
            ],
        ),
        (
            "PyJWT ES256",
            vec!["pyjwt".into(), ec_pem, "ES256".into(), "ec".into()],
        ),
        (
            "PyJWT EdDSA",
            vec!["pyjwt".into(), ed_pem, "EdDSA".into(), "ed".into()],
        ),
    ];
    for (desc, args) in runs {
        let mut full = args.clone();
        full.extend([
            "--issuer".into(),
            ISSUER.into(),
            "--audience".into(),
            SERVICE.into(),
        ]);
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            testkit::run_python("mint_token.py", &args)
        })
        .await
        .unwrap();
        testkit::assert_success(desc, &out);
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let reply = unary(proxy.url(), Some(&token)).await;
        assert!(reply.is_ok(), "{desc}: {reply:?}");
    }
}
