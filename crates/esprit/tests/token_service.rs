//! The token service end to end: `esprit iam serve --issuer-url` and its flags, key files whose
//! `token_uri` names it, `esprit token --id-token`, Google's Python library (unmodified) against
//! it, and the proxy accepting its ID tokens, across a signing-key rotation without a restart.
//!
//! Python (the venv of `scripts/python-env.sh`, or `$ESPRIT_PY`) is required: without it the
//! interop test fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use echo::pb::EchoRequest;
use iam::{Kek, TokenServiceSettings};
use serde_json::Value;
use testkit::cli::{assert_fails, ok, output};
use testkit::{KeyServer, RunningProxy, echo_service, http1, settings, start_echo};

const SERVICE: &str = "echo.example.com";

fn esprit() -> Command {
    testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
}

/// A store with one account, made with the CLI; the key server with a token service on it.
struct World {
    dir: tempfile::TempDir,
    store: PathBuf,
    email: String,
    server: KeyServer,
    tokens: iam::TokenService,
}

impl World {
    async fn start(clock: clock::SharedClock, rotation: Duration) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        let email = ok(esprit()
            .args([
                "iam",
                "accounts",
                "create",
                "caller-one",
                "--project",
                "my-project",
            ])
            .arg("--store")
            .arg(&store));
        let (server, tokens) = KeyServer::start_tokens(&store, |url| TokenServiceSettings {
            rotation,
            clock,
            ..TokenServiceSettings::new(url, Kek::generate().unwrap())
        })
        .await;
        World {
            dir,
            store,
            email,
            server,
            tokens,
        }
    }

    /// `esprit iam keys create --token-uri {issuer}/token`: the key file's path.
    fn key_file(&self, name: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        ok(esprit()
            .args(["iam", "keys", "create", &self.email, "--out"])
            .arg(&file)
            .args(["--token-uri", &format!("{}/token", self.server.url())])
            .arg("--store")
            .arg(&self.store));
        file
    }
}

/// The echo service behind a provider whose issuer is the token service and whose keys are its
/// JWKS; every method needs a token for `SERVICE`.
async fn proxy_for(issuer: &str) -> (echo::RunningServer, RunningProxy) {
    let yaml = format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: token-service
    issuer: {issuer}
    jwks_uri: {issuer}/oauth2/v3/certs
    audiences: {SERVICE}
  rules:
  - selector: "*"
    requirements:
    - provider_id: token-service
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    );
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_service(&yaml), settings(backend.addr())).await;
    (backend, proxy)
}

async fn call(proxy: &RunningProxy, token: &str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(proxy.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = echo::pb::echo_client::EchoClient::new(channel);
    let mut request = tonic::Request::new(EchoRequest {
        payload: Bytes::from_static(b"p"),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client.unary(request).await.map(|_| ())
}

/// Runs `command` on a blocking thread (the in-process servers keep running) and returns its
/// output.
async fn output_off_thread(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || output(&mut command))
        .await
        .unwrap()
}

/// `esprit token --key-file KEY --id-token --target-audience SERVICE EXTRA…`, off the thread.
async fn id_token_command(key: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut command = esprit();
    command
        .args(["token", "--key-file"])
        .arg(key)
        .args(["--id-token", "--target-audience", SERVICE])
        .args(extra);
    output_off_thread(command).await
}

fn kid(token: &str) -> String {
    jose::Jwt::parse(token)
        .unwrap()
        .header()
        .kid
        .clone()
        .unwrap()
        .0
}

#[tokio::test]
async fn google_auth_gets_tokens_through_the_key_files_token_uri_and_the_proxy_accepts_them() {
    let w = World::start(clock::system(), iam::token::DEFAULT_ROTATION).await;
    let key_file = w.key_file("key.json");
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(key["token_uri"], format!("{}/token", w.server.url()));

    let (path, issuer) = (key_file.to_str().unwrap().to_owned(), w.server.url());
    let out = tokio::task::spawn_blocking(move || {
        testkit::run_python("token_service_interop.py", &[&path, SERVICE, &issuer])
    })
    .await
    .unwrap();
    testkit::assert_success("token_service_interop.py", &out);
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["claims"]["email"], w.email);

    // The access token google-auth got belongs to the account, with its scope.
    let access = got["access_token"].as_str().unwrap();
    let (account, scopes) = w.tokens.access_token_owner(access).unwrap().unwrap();
    assert_eq!(account.email, w.email);
    assert_eq!(scopes, ["https://www.googleapis.com/auth/cloud-platform"]);

    // The ID token google-auth got passes the proxy; one for another audience does not.
    let (_backend, proxy) = proxy_for(&w.server.url()).await;
    call(&proxy, got["id_token"].as_str().unwrap())
        .await
        .unwrap();
    let account = w.tokens.account(&w.email).unwrap();
    let elsewhere = w
        .tokens
        .issue_id_token(&account, "other.example.com", true)
        .unwrap();
    let refused = call(&proxy, &elsewhere).await.unwrap_err();
    // ESP's answer to a token for another audience.
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(refused.message(), "Audiences in Jwt are not allowed");
}

#[tokio::test]
async fn esprit_token_id_token_asks_the_token_endpoint_and_prints_its_answer() {
    let w = World::start(clock::system(), iam::token::DEFAULT_ROTATION).await;
    let key_file = w.key_file("key.json");
    let out = id_token_command(&key_file, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let jwks = http1(w.server.addr, "GET", "/oauth2/v3/certs", &[], Vec::new()).await;
    let set = jose::KeySet::parse(jwks.body.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(&token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    assert_eq!(jwt.claims().iss.as_deref(), Some(w.server.url().as_str()));
    assert_eq!(jwt.claims().aud, [SERVICE]);
    assert_eq!(jwt.claims().all["email"], w.email);

    // --token-uri overrides the key file's; a refusal is printed with OAuth's error, exit 1.
    let plain = w.dir.path().join("plain.json");
    ok(esprit()
        .args(["iam", "keys", "create", &w.email, "--out"])
        .arg(&plain)
        .arg("--store")
        .arg(&w.store));
    let plain_key: Value = serde_json::from_str(&std::fs::read_to_string(&plain).unwrap()).unwrap();
    assert_eq!(
        plain_key["token_uri"],
        "https://oauth2.googleapis.com/token"
    );
    let token_uri = format!("{}/token", w.server.url());
    let out = id_token_command(&plain, &["--token-uri", &token_uri]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(esprit()
        .args([
            "iam",
            "keys",
            "disable",
            &w.email,
            plain_key["private_key_id"].as_str().unwrap(),
        ])
        .arg("--store")
        .arg(&w.store));
    let out = id_token_command(&plain, &["--token-uri", &token_uri]).await;
    let stderr = assert_fails("token --id-token with a disabled key", &out, 1);
    assert!(
        stderr.contains(&format!(
            "the token endpoint {token_uri} refused (HTTP 400): invalid_grant"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // ESPRIT_TOKEN_URI sets --token-uri of keys create.
    let from_env = w.dir.path().join("env.json");
    ok(esprit()
        .env("ESPRIT_TOKEN_URI", &token_uri)
        .args(["iam", "keys", "create", &w.email, "--out"])
        .arg(&from_env)
        .arg("--store")
        .arg(&w.store));
    let env_key: Value =
        serde_json::from_str(&std::fs::read_to_string(&from_env).unwrap()).unwrap();
    assert_eq!(env_key["token_uri"], token_uri);
}

#[tokio::test]
async fn the_proxy_picks_up_a_rotated_signing_key_without_a_restart() {
    let clock = clock::ManualClock::starting_now();
    let w = World::start(clock.shared(), Duration::from_secs(3600)).await;
    let account = w.tokens.account(&w.email).unwrap();
    let (_backend, proxy) = proxy_for(&w.server.url()).await;

    let before = w.tokens.issue_id_token(&account, SERVICE, true).unwrap();
    call(&proxy, &before).await.unwrap();

    // A signing window later (time moved in the key server only): the successor signs.
    clock.advance(Duration::from_secs(3600));
    let after = w.tokens.issue_id_token(&account, SERVICE, true).unwrap();
    assert_ne!(kid(&after), kid(&before));
    call(&proxy, &after).await.unwrap();
    // The previous key's token still passes on the same proxy.
    call(&proxy, &before).await.unwrap();
}

/// `esprit iam kek generate` and `esprit iam serve --issuer-url` with its key-encryption key.
#[tokio::test]
async fn iam_serve_runs_the_token_service_with_its_kek_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("iam.db");
    let kek = dir.path().join("kek");
    ok(esprit().args(["iam", "kek", "generate", "--out"]).arg(&kek));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let written = std::fs::read_to_string(&kek).unwrap();
    let out = output(esprit().args(["iam", "kek", "generate", "--out"]).arg(&kek));
    let err = assert_fails("kek generate over a file", &out, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&kek).unwrap(), written);

    let issuer = "https://iam.example.com";
    // Without a KEK: refused at start.
    let out = output(
        esprit()
            .args([
                "iam",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--issuer-url",
                issuer,
                "--store",
            ])
            .arg(&store),
    );
    let err = assert_fails("serve --issuer-url without a KEK", &out, 1);
    assert!(
        err.contains("--issuer-url needs a key-encryption key"),
        "{err}"
    );

    // With it: discovery names the issuer; the KEK is in no output.
    let kek_arg = kek.to_str().unwrap();
    let server = testkit::cli::iam_serve(
        env!("CARGO_BIN_EXE_esprit"),
        &store,
        &["--issuer-url", issuer, "--kek-file", kek_arg],
    );
    let addr: SocketAddr = server
        .addr
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let reply = http1(
        addr,
        "GET",
        "/.well-known/openid-configuration",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["issuer"], issuer);
    assert_eq!(
        reply.json()["jwks_uri"],
        format!("{issuer}/oauth2/v3/certs")
    );
    let certs = http1(addr, "GET", "/oauth2/v3/certs", &[], Vec::new()).await;
    assert_eq!(certs.json()["keys"].as_array().unwrap().len(), 1);
    let (_status, logs) = server.sigterm_and_wait();
    assert!(!logs.contains(written.trim()), "the KEK was logged");

    // The same KEK from the environment works; another KEK is refused with the clear error.
    let mut from_env = esprit();
    from_env
        .env("ESPRIT_IAM_KEK", written.trim())
        .args([
            "iam",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--issuer-url",
            issuer,
            "--store",
        ])
        .arg(&store);
    let server = testkit::cli::Listening::first_line(from_env);
    let (status, _) = server.sigterm_and_wait();
    assert!(status.success(), "{status}");
    let other = dir.path().join("other-kek");
    ok(esprit()
        .args(["iam", "kek", "generate", "--out"])
        .arg(&other));
    let out = output(
        esprit()
            .args([
                "iam",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--issuer-url",
                issuer,
                "--kek-file",
            ])
            .arg(&other)
            .arg("--store")
            .arg(&store),
    );
    let err = assert_fails("serve with another KEK", &out, 1);
    assert!(
        err.contains("the key-encryption key does not match the IAM store"),
        "{err}"
    );
}
