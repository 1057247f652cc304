//! `esprit token --impersonate` as a process against the key server with its token service
//! (in this process on 127.0.0.1:0): the key file's account gets an access token from its
//! `token_uri`, then an ID token (generateIdToken) or a signed JWT (signJwt) of the target,
//! only while it holds the Token Creator role on the target.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use testkit::KeyServer;
use tokio::process::Command;

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");
const AUD: &str = "bookstore.endpoints.my-project.cloud.goog";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

fn esprit() -> Command {
    Command::from(testkit::cli::command(ESPRIT))
}

async fn run(args: &[&str]) -> Output {
    esprit().args(args).output().await.expect("run esprit")
}

async fn ok(args: &[&str]) -> String {
    let out = run(args).await;
    assert!(
        out.status.success(),
        "esprit {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_owned()
}

struct World {
    dir: tempfile::TempDir,
    store: PathBuf,
    server: KeyServer,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        iam::Store::open(&store).unwrap();
        let (server, _tokens) = KeyServer::start_tokens(&store, |url| {
            iam::TokenServiceSettings::new(url, iam::Kek::generate().unwrap())
        })
        .await;
        World { dir, store, server }
    }

    fn store(&self) -> &str {
        self.store.to_str().unwrap()
    }

    async fn iam(&self, args: &[&str]) -> String {
        let mut all = vec!["iam"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", self.store()]);
        ok(&all).await
    }

    async fn account(&self, name: &str) -> String {
        self.iam(&["accounts", "create", name, "--project", "my-project"])
            .await
    }

    /// A key file of `email` whose `token_uri` is the token service's `/token`.
    async fn key_file(&self, email: &str) -> PathBuf {
        let out = self.dir.path().join(format!("{email}.json"));
        let base = self.server.url();
        self.iam(&[
            "keys",
            "create",
            email,
            "--issuer-base-url",
            &base,
            "--token-uri",
            &format!("{base}/token"),
            "--out",
            out.to_str().unwrap(),
        ])
        .await;
        out
    }

    async fn role(&self, verb: &str, member: &str, resource: &str) {
        self.iam(&[
            "roles",
            verb,
            "--member",
            &format!("serviceAccount:{member}"),
            "--role",
            TOKEN_CREATOR,
            "--resource",
            resource,
        ])
        .await;
    }

    async fn get(&self, path: &str) -> String {
        let reply = testkit::http1(self.server.addr, "GET", path, &[], Vec::new()).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.body
    }
}

fn verify(token: &str, keys: &str) -> serde_json::Map<String, Value> {
    let set = jose::KeySet::parse(keys.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    jwt.claims().all.clone()
}

fn key_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_needs_the_token_creator_role() {
    let w = World::new().await;
    let caller = w.account("caller-one").await;
    let target = w.account("target-one").await;
    let key = w.key_file(&caller).await;
    let id_token_args = [
        "token",
        "--key-file",
        key_arg(&key),
        "--impersonate",
        &target,
        "--audiences",
        AUD,
        "--include-email",
    ];

    // Without the role: Google's refusal, exit 1.
    let out = run(&id_token_args).await;
    let err = testkit::cli::assert_fails("esprit token --impersonate", &out, 1);
    assert_eq!(
        err.trim(),
        "esprit: generateIdToken refused: PERMISSION_DENIED (403): Permission \
         'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist)."
    );
    assert!(out.stdout.is_empty());

    // With it: an ID token of the target from the token service.
    w.role("grant", &caller, &target).await;
    let token = ok(&id_token_args).await;
    let certs = w.get("/oauth2/v3/certs").await;
    let claims = verify(&token, &certs);
    assert_eq!(claims["iss"], json!(w.server.url()));
    assert_eq!(claims["aud"], json!(AUD));
    assert_eq!(claims["email"], json!(target));
    assert_eq!(claims["email_verified"], json!(true));

    // --sign-jwt: the usual claims, signed by the target's server-managed key.
    let signed = ok(&[
        "token",
        "--key-file",
        key_arg(&key),
        "--impersonate",
        &target,
        "--sign-jwt",
        "--audiences",
        AUD,
        "--lifetime",
        "10m",
        "--claim",
        "tier=gold",
    ])
    .await;
    let jwk = w
        .get(&format!(
            "/service_accounts/v1/jwk/{}",
            iam::encode_path_segment(&target)
        ))
        .await;
    let claims = verify(&signed, &jwk);
    for name in ["iss", "sub", "email"] {
        assert_eq!(claims[name], json!(target), "{name}");
    }
    assert_eq!(claims["aud"], json!(AUD));
    assert_eq!(claims["tier"], json!("gold"));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 600);

    // Revoked: refused again.
    w.role("revoke", &caller, &target).await;
    let out = run(&id_token_args).await;
    let err = testkit::cli::assert_fails("esprit token --impersonate", &out, 1);
    assert!(err.contains("PERMISSION_DENIED (403)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_errors_are_clear() {
    let w = World::new().await;
    let caller = w.account("caller-one").await;
    let target = w.account("target-one").await;
    let key = w.key_file(&caller).await;
    w.role("grant", &caller, &target).await;
    let k = key_arg(&key);

    // Claims flags without --sign-jwt; several audiences for an ID token.
    let out = run(&[
        "token",
        "--key-file",
        k,
        "--impersonate",
        &target,
        "--audiences",
        AUD,
        "--claim",
        "a=1",
    ])
    .await;
    let err = testkit::cli::assert_fails("--claim without --sign-jwt", &out, 1);
    assert!(
        err.contains("--claim does not apply to an ID token"),
        "{err}"
    );
    let out = run(&[
        "token",
        "--key-file",
        k,
        "--impersonate",
        &target,
        "--audiences",
        "a,b",
    ])
    .await;
    let err = testkit::cli::assert_fails("two audiences", &out, 1);
    assert!(err.contains("one audience"), "{err}");
    // --sign-jwt needs --impersonate (a usage error).
    let out = run(&["token", "--key-file", k, "--sign-jwt", "--audiences", AUD]).await;
    testkit::cli::assert_fails("--sign-jwt alone", &out, 2);
    // An exp beyond Google's 12 h: the API's message.
    let out = run(&[
        "token",
        "--key-file",
        k,
        "--impersonate",
        &target,
        "--sign-jwt",
        "--audiences",
        AUD,
        "--lifetime",
        "13h",
    ])
    .await;
    let err = testkit::cli::assert_fails("13 h signJwt", &out, 1);
    assert!(
        err.contains("signJwt refused: INVALID_ARGUMENT (400)")
            && err.contains("more than 12 hours"),
        "{err}"
    );
    // Nothing listens at the IAM Credentials URL.
    let dead = testkit::dead_addr();
    let out = run(&[
        "token",
        "--key-file",
        k,
        "--impersonate",
        &target,
        "--audiences",
        AUD,
        "--iam-credentials-url",
        &format!("http://{dead}"),
    ])
    .await;
    let err = testkit::cli::assert_fails("dead IAM URL", &out, 1);
    assert!(
        err.contains(&format!(
            "calling http://{dead}/v1/projects/-/serviceAccounts/"
        )),
        "{err}"
    );
    // A disabled key: the token endpoint's refusal.
    let key_id: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    w.iam(&[
        "keys",
        "disable",
        &caller,
        key_id["private_key_id"].as_str().unwrap(),
    ])
    .await;
    let out = run(&[
        "token",
        "--key-file",
        k,
        "--impersonate",
        &target,
        "--audiences",
        AUD,
    ])
    .await;
    let err = testkit::cli::assert_fails("disabled key", &out, 1);
    assert!(
        err.contains("the token endpoint") && err.contains("invalid_grant"),
        "{err}"
    );
}
