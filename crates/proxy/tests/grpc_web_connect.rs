//! A gRPC-Web client we did not write: `@connectrpc/connect-node`'s gRPC-Web transport (pinned
//! in tests/node, installed by scripts/node-env.sh), over HTTP/1.1 and HTTP/2, calling the echo
//! service through the proxy, unary and server streaming, with and without a valid token.
//! (connect speaks binary gRPC-Web only; text mode is covered at the framing level in
//! `grpc_web.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

const ISSUER: &str = "web@consumer.example";
const SERVICE: &str = "echo.example.com";

/// Runs the connect client against `url` and returns what it printed.
async fn connect_client(
    url: String,
    http_version: &str,
    token: Option<String>,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let descriptors = dir.path().join("echo.pb");
    std::fs::write(&descriptors, echo::FILE_DESCRIPTOR_SET).unwrap();
    let http_version = http_version.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let descriptors = descriptors.to_str().unwrap().to_owned();
        let mut args = vec![descriptors.as_str(), url.as_str(), http_version.as_str()];
        if let Some(token) = &token {
            args.push(token);
        }
        testkit::run_node("grpc_web_client.cjs", &args)
    })
    .await
    .unwrap();
    testkit::assert_success("node grpc_web_client.cjs", &out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_node_calls_unary_and_server_streaming_with_and_without_a_token() {
    use keysets::test_server::{KeyServer, Reply, jwks};
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
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
    jwks_uri: {jwks}
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#,
        jwks = keys.url("/jwks")
    );
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_service(&yaml), settings(backend.addr())).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": ISSUER, "sub": "1", "aud": SERVICE, "iat": now, "exp": now + 3600});
    let token = key
        .signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap();

    for http_version in ["1.1", "2"] {
        let ok = connect_client(proxy.url(), http_version, Some(token.clone())).await;
        assert_eq!(
            ok["unary"]["payload"], "hello web",
            "HTTP/{http_version}: {ok}"
        );
        assert_eq!(
            ok["stream"]["indexes"],
            serde_json::json!([0, 1, 2]),
            "HTTP/{http_version}: {ok}"
        );

        // connect's Code.Unauthenticated is 16, as gRPC's; the message is ESP's.
        let refused = connect_client(proxy.url(), http_version, None).await;
        for call in ["unary", "stream"] {
            assert_eq!(
                refused[call]["code"], 16,
                "HTTP/{http_version} {call}: {refused}"
            );
            assert_eq!(
                refused[call]["message"], "Jwt is missing",
                "HTTP/{http_version} {call}: {refused}"
            );
        }

        let bad = connect_client(proxy.url(), http_version, Some("not.a.token".into())).await;
        assert_eq!(bad["unary"]["code"], 16, "{bad}");
        assert_eq!(bad["stream"]["code"], 16, "{bad}");
    }
}
