//! `esprit token` and the key server, checked against each other and against Google's and
//! PyJWT's Python libraries:
//! - tokens `esprit token` mints verify in Rust (`jose`) and in PyJWT, with the JWKS and with the
//!   X.509 certificates that `iam::serve` publishes on 127.0.0.1:0;
//! - key files `esprit iam keys create` writes load in google-auth, and the tokens google-auth
//!   signs with them verify in Rust against the served JWKS.
//!
//! Python (the venv of `scripts/python-env.sh`, or `$ESPRIT_PY`) is required: without it these
//! tests fail.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use testkit::KeyServer;
use tokio::net::TcpStream;
use tokio::process::Command;

const AUD: &str = "bookstore.endpoints.my-project.cloud.goog";

use testkit::{python, repo_root};

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// A store with one account, its RS256 and ES256 key files, and the key server on it.
struct World {
    dir: tempfile::TempDir,
    store: PathBuf,
    email: String,
    rsa_file: PathBuf,
    ec_file: PathBuf,
    addr: SocketAddr,
    server: KeyServer,
}

fn esprit() -> Command {
    Command::from(testkit::cli::command(env!("CARGO_BIN_EXE_esprit")))
}

async fn ok(command: &mut Command) -> String {
    let out = command.output().await.expect("run esprit");
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        let server = KeyServer::start(&store).await;
        let addr = server.addr;
        let email = ok(esprit()
            .args([
                "iam",
                "accounts",
                "create",
                "bookstore-client",
                "--project",
                "my-project",
            ])
            .arg("--store")
            .arg(&store))
        .await;
        let base = format!("http://{addr}");
        let mut files = Vec::new();
        for (name, alg) in [("rsa.json", "RS256"), ("ec.json", "ES256")] {
            let file = dir.path().join(name);
            ok(esprit()
                .args(["iam", "keys", "create", &email, "--algorithm", alg])
                .args(["--issuer-base-url", &base, "--out"])
                .arg(&file)
                .arg("--store")
                .arg(&store))
            .await;
            files.push(file);
        }
        let ec_file = files.pop().unwrap();
        let rsa_file = files.pop().unwrap();
        World {
            dir,
            store,
            email,
            rsa_file,
            ec_file,
            addr,
            server,
        }
    }

    fn jwks_url(&self) -> String {
        format!(
            "http://{}/service_accounts/v1/jwk/{}",
            self.addr,
            self.email.replace('@', "%40")
        )
    }

    /// The key file's own `client_x509_cert_url`: it points at this server.
    fn x509_url(&self, key_file: &Path) -> String {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(key_file).unwrap()).unwrap();
        let url = file["client_x509_cert_url"].as_str().unwrap().to_owned();
        assert_eq!(
            url,
            format!(
                "http://{}/robot/v1/metadata/x509/{}",
                self.addr,
                self.email.replace('@', "%40")
            )
        );
        url
    }

    async fn get(&self, url: &str) -> Vec<u8> {
        let path = url.strip_prefix(&format!("http://{}", self.addr)).unwrap();
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header("host", self.addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    async fn key_sets(&self) -> [jose::KeySet; 2] {
        let jwks = self.get(&self.jwks_url()).await;
        let x509 = self.get(&self.x509_url(&self.rsa_file)).await;
        [
            jose::KeySet::parse(&jwks, jose::KeySource::Remote).unwrap(),
            jose::KeySet::parse(&x509, jose::KeySource::Remote).unwrap(),
        ]
    }

    /// `esprit token --key-file FILE EXTRA…`, with `--audiences AUD` unless EXTRA has one.
    async fn mint(&self, key_file: &Path, extra: &[&str]) -> String {
        let mut command = esprit();
        command
            .args(["token", "--key-file"])
            .arg(key_file)
            .args(extra);
        if !extra.contains(&"--audiences") {
            command.args(["--audiences", AUD]);
        }
        ok(&mut command).await
    }

    async fn stop(self) {
        self.server.stop().await;
        drop(self.dir);
    }
}

fn key_id(key_file: &Path) -> String {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    file["private_key_id"].as_str().unwrap().to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The decoded header and payload of a compact JWS.
fn decode(token: &str) -> (Value, Value) {
    let jwt = jose::Jwt::parse(token).unwrap();
    let header = token.split('.').next().unwrap();
    let header = base64url_decode(header);
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(jwt.jws().payload()).unwrap(),
    )
}

fn base64url_decode(segment: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in segment.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esprit_tokens_verify_in_rust_against_both_served_formats() {
    let world = World::new().await;
    let key_sets = world.key_sets().await;
    for (file, alg) in [(&world.rsa_file, "RS256"), (&world.ec_file, "ES256")] {
        let before = now();
        let token = world.mint(file, &[]).await;
        let (header, claims) = decode(&token);
        assert_eq!(
            header,
            json!({"alg": alg, "typ": "JWT", "kid": key_id(file)})
        );
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat >= before && iat <= now(), "iat {iat}");
        assert_eq!(
            claims,
            json!({"iat": iat, "exp": iat + 3600, "aud": AUD, "iss": world.email,
                   "sub": world.email, "email": world.email})
        );
        let jws = jose::Jws::parse(&token).unwrap();
        for set in &key_sets {
            let key = jose::verify(&jws, set).unwrap();
            assert_eq!(key.kid().unwrap().as_str(), key_id(file));
        }
    }

    // Every flag.
    let token = world
        .mint(
            &world.rsa_file,
            &[
                "--audiences",
                "a.example.com,b.example.com",
                "--issuer",
                "https://issuer.example.com",
                "--subject",
                "12345678",
                "--email",
                "",
                "--lifetime",
                "90s",
                "--claim",
                "tier=gold",
                "--claim",
                "roles=[\"reader\",\"writer\"]",
            ],
        )
        .await;
    let (_, claims) = decode(&token);
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(
        claims,
        json!({"iat": iat, "exp": iat + 90, "aud": ["a.example.com", "b.example.com"],
               "iss": "https://issuer.example.com", "sub": "12345678", "email": "",
               "tier": "gold", "roles": ["reader", "writer"]})
    );
    jose::verify(&jose::Jws::parse(&token).unwrap(), &key_sets[0]).unwrap();
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_are_clear() {
    let world = World::new().await;
    let run = |args: Vec<String>| async move {
        let out = esprit().arg("token").args(args).output().await.unwrap();
        assert!(out.stdout.is_empty(), "printed {}", text(&out.stdout));
        (out.status.code(), text(&out.stderr))
    };
    let rsa = world.rsa_file.display().to_string();
    let missing = world.dir.path().join("missing.json").display().to_string();
    let (code, err) = run(vec![
        "--key-file".into(),
        missing.clone(),
        "--audiences".into(),
        AUD.into(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("reading key file {missing}")),
        "{err}"
    );

    let bogus = world.dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"type\": \"authorized_user\"}").unwrap();
    let (code, err) = run(vec![
        "--key-file".into(),
        bogus.display().to_string(),
        "--audiences".into(),
        AUD.into(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("service account key file is invalid"), "{err}");

    for (args, want) in [
        (vec!["--lifetime", "25h"], "at most 24h"),
        (vec!["--lifetime", "0"], "at least 1s"),
        (
            vec!["--claim", "exp=1"],
            "--claim may not set \"exp\": use --lifetime",
        ),
        (vec!["--claim", "nothing"], "expected NAME=JSON"),
    ] {
        let mut all: Vec<String> = vec![
            "--key-file".into(),
            rsa.clone(),
            "--audiences".into(),
            AUD.into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let (code, err) = run(all).await;
        assert_eq!(code, Some(2), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, err) = run(vec!["--key-file".into(), rsa.clone()]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--audiences"), "{err}");
    let (code, err) = run(vec![
        "--key-file".into(),
        rsa,
        "--audiences".into(),
        "a,,b".into(),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("an audience is empty"), "{err}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_esprit_tokens_with_the_jwks_and_the_certificates() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let world = World::new().await;
    let script = repo_root().join("tests/python/iam_token_verify.py");
    for file in [&world.rsa_file, &world.ec_file] {
        let token = world.mint(file, &[]).await;
        let out = Command::new(&python)
            .arg(&script)
            .arg(&token)
            .arg(world.jwks_url())
            .arg(world.x509_url(file))
            .args([AUD, &world.email, &world.email, &world.email, "3600"])
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .await
            .unwrap_or_else(|err| panic!("running {}: {err}", python.display()));
        assert!(
            out.status.success(),
            "{} {}: {}\n{}",
            script.display(),
            file.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().next(), Some("verified"), "{stdout}");
        let claims: Value = serde_json::from_str(stdout.lines().nth(1).unwrap()).unwrap();
        assert_eq!(claims["aud"], AUD);
        assert_eq!(claims["email"], world.email.as_str());
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_loads_key_files_and_its_tokens_verify_against_the_served_keys() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let world = World::new().await;
    let script = repo_root().join("tests/python/iam_keyfile_sign.py");
    let key_sets = world.key_sets().await;
    for (file, alg) in [(&world.rsa_file, "RS256"), (&world.ec_file, "ES256")] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(file)
            .arg(AUD)
            .output()
            .await
            .unwrap_or_else(|err| panic!("running {}: {err}", python.display()));
        assert!(
            out.status.success(),
            "{} {}: {}",
            script.display(),
            file.display(),
            text(&out.stderr)
        );
        let token = text(&out.stdout).trim().to_owned();
        let (header, claims) = decode(&token);
        assert_eq!(header["alg"], alg);
        assert_eq!(header["kid"], key_id(file).as_str());
        assert_eq!(claims["aud"], AUD);
        assert_eq!(claims["iss"], world.email.as_str());
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
        let jws = jose::Jws::parse(&token).unwrap();
        for set in &key_sets {
            let key = jose::verify(&jws, set).unwrap();
            assert_eq!(key.kid().unwrap().as_str(), key_id(file));
        }
    }

    // Once the key is disabled its tokens no longer verify against what is served.
    let rsa_id = key_id(&world.rsa_file);
    ok(esprit()
        .args(["iam", "keys", "disable", &world.email, &rsa_id, "--store"])
        .arg(&world.store))
    .await;
    let out = Command::new(&python)
        .arg(&script)
        .arg(&world.rsa_file)
        .arg(AUD)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let jwks = world.get(&world.jwks_url()).await;
    let set = jose::KeySet::parse(&jwks, jose::KeySource::Remote).unwrap();
    let err = jose::verify(&jose::Jws::parse(&token).unwrap(), &set).unwrap_err();
    assert!(
        matches!(err, jose::JoseError::KeyNotFound { .. }),
        "{err:?}"
    );
    world.stop().await;
}
