//! `esprit token inspect` against a real key server: the verdict, the failed check, the code
//! and message the proxy would answer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::time::{SystemTime, UNIX_EPOCH};

use keysets::test_server::{KeyServer, Reply, jwks};
use serde_json::json;

const ISSUER: &str = "client@consumer-project.iam.gserviceaccount.com";

fn config(jwks_uri: &str) -> String {
    format!(
        r#"type: google.api.Service
config_version: 3
name: echo.example.com
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
  - selector: esprit.echo.v1.Echo.Bidi
  - selector: esprit.echo.v1.Echo.ClientStream
    requirements:
    - provider_id: consumer
      x_esprit_allowed_callers: [other@consumer-project.iam.gserviceaccount.com]
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explains_acceptance_and_each_rejection() {
    let server = KeyServer::start().await.unwrap();
    let key = jose::generate_es256().unwrap();
    server.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("api_config.yaml");
    std::fs::write(&config_path, config(&server.url("/jwks"))).unwrap();
    let descriptor = dir.path().join("echo.pb");
    std::fs::write(&descriptor, echo::FILE_DESCRIPTOR_SET).unwrap();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mint = |claims: serde_json::Value| {
        key.signer()
            .unwrap()
            .sign_jwt(Some("k1"), key.algorithm, &claims)
            .unwrap()
    };
    let good = mint(
        json!({"iss": ISSUER, "aud": "https://echo.example.com", "iat": now, "exp": now + 600}),
    );
    let expired = mint(
        json!({"iss": ISSUER, "aud": "echo.example.com", "iat": now - 7200, "exp": now - 3600}),
    );
    let wrong_aud = mint(json!({"iss": ISSUER, "aud": "other", "iat": now, "exp": now + 600}));
    // The self-signed account writes the listed account's email: its caller is still itself.
    let forged_email = mint(json!({"iss": ISSUER, "aud": "echo.example.com", "iat": now,
        "exp": now + 600, "email": "other@consumer-project.iam.gserviceaccount.com",
        "email_verified": true}));

    let table: Vec<(&str, String, &str, i32, Vec<&str>)> = vec![
        (
            "valid",
            good.clone(),
            "esprit.echo.v1.Echo.Unary",
            0,
            vec![
                "ok   signature",
                "ok   caller",
                "every account of the provider may call",
                "ACCEPTED",
            ],
        ),
        (
            "valid, as a pasted header value and a gRPC path",
            format!("Bearer {good}"),
            "/esprit.echo.v1.Echo/ServerStream",
            0,
            vec!["ACCEPTED"],
        ),
        (
            "no rule",
            good.clone(),
            "esprit.echo.v1.Echo.Bidi",
            0,
            vec!["checks no JWT"],
        ),
        (
            "expired",
            expired,
            "esprit.echo.v1.Echo.Unary",
            1,
            vec![
                "FAIL time",
                "REJECTED: 16 UNAUTHENTICATED \"Jwt is expired\" (HTTP 401)",
            ],
        ),
        (
            "wrong audience",
            wrong_aud,
            "esprit.echo.v1.Echo.Unary",
            1,
            vec![
                "FAIL audience",
                "REJECTED: 7 PERMISSION_DENIED \"Audiences in Jwt are not allowed\" (HTTP 403)",
            ],
        ),
        (
            "caller not listed (x_esprit_allowed_callers)",
            forged_email,
            "esprit.echo.v1.Echo.ClientStream",
            1,
            vec![
                "FAIL caller",
                "caller client@consumer-project.iam.gserviceaccount.com (the provider's issuer: \
                 a single account)",
                "REJECTED: 7 PERMISSION_DENIED \"Caller in Jwt is not allowed\" (HTTP 403)",
            ],
        ),
        (
            "garbage",
            "not-a-token".into(),
            "esprit.echo.v1.Echo.Unary",
            1,
            vec!["FAIL parse", "REJECTED: 16 UNAUTHENTICATED"],
        ),
    ];
    for (desc, token, method, want_code, want_lines) in table {
        let config_path = config_path.clone();
        let descriptor = descriptor.clone();
        let method = method.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
                .args(["token", "inspect", &token, "--method", &method])
                .arg("--service-config")
                .arg(&config_path)
                .arg("--descriptor")
                .arg(&descriptor)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(want_code),
            "{desc}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The method's providers' keys are fetched as the proxy would (none for a method
        // without requirements).
        let fetched = stdout.contains("keys of consumer: 1 usable");
        assert_eq!(fetched, desc != "no rule", "{desc}:\n{stdout}");
        for line in want_lines {
            assert!(
                stdout.contains(line),
                "{desc}: missing {line:?} in\n{stdout}"
            );
        }
    }

    // An unknown method is an error that names it.
    let out = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
        .args([
            "token",
            "inspect",
            &good,
            "--method",
            "esprit.echo.v1.Echo.Nope",
        ])
        .arg("--service-config")
        .arg(&config_path)
        .arg("--descriptor")
        .arg(&descriptor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
}
