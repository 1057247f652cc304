//! Issue 12 item 2: several key servers (`esprit iam serve` processes) on one PostgreSQL store.
//! Any replica answers any request with what another replica or the CLI wrote, at the next
//! request (the servers cache nothing of the store); two replicas taking writes over HTTP while
//! two CLI processes write lose no update and leave nothing half-written; and a replica's
//! `/readyz` follows its store's reachability.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::cli::{self, Listening};
use testkit::relay::{Relay, RelayMode};
use testkit::{HttpReply, TestStore, http_get, http1, post_form, wait_for_status};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");
const SERVICE: &str = "bookstore.endpoints.my-project.cloud.goog";
const CONTROLLER: &str = "roles/servicemanagement.serviceController";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";
/// One issuer for every replica, as behind one Service name.
const ISSUER: &str = "http://esprit-iam.replicas.test";
const GOOGLE_TOKEN_AUD: &str = "https://oauth2.googleapis.com/token";
const CHECK_AUD: &str = "https://servicecontrol.googleapis.com/";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `esprit iam ARGS --store STORE`.
fn iam(store: &str, args: &[&str]) -> Command {
    let mut command = cli::command(ESPRIT);
    command.arg("iam").args(args).arg("--store").arg(store);
    command
}

fn ok(store: &str, args: &[&str]) -> String {
    cli::ok(&mut iam(store, args))
}

fn run(store: &str, args: &[&str]) -> Output {
    cli::output(&mut iam(store, args))
}

/// A running `esprit iam serve` with its admin listener and JSON log.
struct Replica {
    process: Listening,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    fn start(store: &str, extra: &[&str]) -> Replica {
        let mut args = vec!["--admin-listen", "127.0.0.1:0", "--log-format", "json"];
        args.extend_from_slice(extra);
        let mut process = cli::iam_serve(ESPRIT, store, &args);
        let logs = process.json_lines();
        let admin = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(30)).ok())
            .find(|line| line["message"] == "admin listener")
            .expect("iam serve logs its admin listener");
        let admin = admin["admin"].as_str().unwrap().parse().unwrap();
        let addr = process
            .addr
            .strip_prefix("http://")
            .unwrap()
            .parse()
            .unwrap();
        // The rest of the log is read and dropped, so the process never blocks on it.
        std::thread::spawn(move || logs.into_iter().for_each(drop));
        Replica {
            process,
            addr,
            admin,
        }
    }

    /// With the token service and authenticated checks.
    fn with_tokens(store: &str, kek: &str) -> Replica {
        Replica::start(
            store,
            &[
                "--issuer-url",
                ISSUER,
                "--kek-file",
                kek,
                "--check-auth",
                "required",
            ],
        )
    }

    async fn get(&self, path: &str) -> String {
        let (status, body) = http_get(self.addr, path).await;
        assert_eq!(status, 200, "GET {path} at {}: {body}", self.addr);
        body
    }

    /// `POST /token` with an assertion signed by `key_file` for `email`.
    async fn token(&self, key_file: &std::path::Path, email: &str, ask: (&str, &str)) -> HttpReply {
        // google-auth puts `scope` or `target_audience` in the assertion's claims.
        let assertion = testkit::tokens::sign_with_key_file_and(
            key_file,
            email,
            GOOGLE_TOKEN_AUD,
            &[ask, ("jti", &nonce())],
        );
        post_form(
            self.addr,
            "/token",
            &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
        )
        .await
    }

    /// An access token (scope cloud-platform) for the key file's account.
    async fn access_token(&self, key_file: &std::path::Path, email: &str) -> String {
        let reply = self.token(key_file, email, ("scope", CLOUD_PLATFORM)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/services/SERVICE:check` for `api_key` with `Authorization: Bearer bearer`.
    async fn check(&self, bearer: &str, api_key: &str) -> HttpReply {
        let body = json!({ "api_key": api_key }).to_string();
        http1(
            self.addr,
            "POST",
            &format!("/v1/services/{SERVICE}:check"),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {bearer}")),
            ],
            body.into_bytes(),
        )
        .await
    }

    /// An IAM Credentials call on `target` with the access token `bearer`.
    async fn credentials(
        &self,
        bearer: &str,
        target: &str,
        method: &str,
        body: Value,
    ) -> HttpReply {
        http1(
            self.addr,
            "POST",
            &format!("/v1/projects/-/serviceAccounts/{target}:{method}"),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {bearer}")),
            ],
            body.to_string().into_bytes(),
        )
        .await
    }
}

/// A value no other token of this test has (so no cache or replay rule could answer it).
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("n-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The claims of `token` if it verifies against the key document `keys` (JWKS or X.509 map).
fn verify(token: &str, keys: &str) -> serde_json::Map<String, Value> {
    let set = jose::KeySet::parse(keys.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap_or_else(|err| panic!("{err:?} against {keys}"));
    jwt.claims().all.clone()
}

/// A PostgreSQL store with a key-encryption key file; returns (store, its `--store`, KEK path).
fn store_with_kek() -> (TestStore, String, String) {
    let ts = TestStore::postgres();
    let store = ts.arg();
    let kek = ts.file("kek");
    cli::ok(
        cli::command(ESPRIT)
            .args(["iam", "kek", "generate", "--out"])
            .arg(&kek),
    );
    ok(&store, &["migrate"]);
    (ts, store, kek.display().to_string())
}

fn account(store: &str, name: &str) -> String {
    ok(
        store,
        &["accounts", "create", name, "--project", "my-project"],
    )
}

fn key_file(ts: &TestStore, store: &str, email: &str, name: &str) -> (std::path::PathBuf, String) {
    let file = ts.file(name);
    let kid = ok(
        store,
        &["keys", "create", email, "--out", file.to_str().unwrap()],
    );
    (file, kid)
}

fn role(store: &str, verb: &str, member: &str, role: &str, resource: &str) {
    ok(
        store,
        &[
            "roles",
            verb,
            "--member",
            &format!("serviceAccount:{member}"),
            "--role",
            role,
            "--resource",
            resource,
        ],
    );
}

/// Tokens minted by one replica work at the other, documents match, and every change made
/// through the CLI (or by the other replica) is seen by both at the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_replica_answers_with_what_any_other_or_the_cli_wrote() {
    let (ts, store, kek) = store_with_kek();
    let caller = account(&store, "caller-one");
    let target = account(&store, "target-one");
    let (caller_key, caller_kid) = key_file(&ts, &store, &caller, "caller.json");
    role(&store, "grant", &caller, TOKEN_CREATOR, &target);
    role(
        &store,
        "grant",
        &caller,
        CONTROLLER,
        &format!("services/{SERVICE}"),
    );
    let created: Value = serde_json::from_str(&ok(
        &store,
        &["api-keys", "create", "--project", "consumer-one", "--json"],
    ))
    .unwrap();
    let api_key = created["key"].as_str().unwrap().to_owned();
    let api_key_id = created["id"].as_str().unwrap().to_owned();

    let a = Replica::with_tokens(&store, &kek);
    let b = Replica::with_tokens(&store, &kek);
    let both = [&a, &b];

    // An access token minted by A is a check credential and an IAM Credentials bearer at B
    // (and the other way round).
    let from_a = a.access_token(&caller_key, &caller).await;
    let from_b = b.access_token(&caller_key, &caller).await;
    let self_signed =
        testkit::tokens::sign_with_key_file(&caller_key, &caller, CHECK_AUD, &nonce());
    for (replica, bearer) in [
        (&b, &from_a),
        (&a, &from_b),
        (&a, &self_signed),
        (&b, &self_signed),
    ] {
        let reply = replica.check(bearer, &api_key).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["valid"], json!(true), "{}", reply.body);
        assert_eq!(reply.json()["consumer_project"], json!("consumer-one"));
    }

    // Both replicas publish the same token-service keys: an ID token signed by one verifies
    // against the other's certificates (JWKS and X.509).
    let id_by_a = a
        .token(
            &caller_key,
            &caller,
            ("target_audience", "https://bookstore.test"),
        )
        .await;
    assert_eq!(id_by_a.status, 200, "{}", id_by_a.body);
    let id_by_a = id_by_a.json()["id_token"].as_str().unwrap().to_owned();
    let id_by_b = b
        .credentials(
            &from_a,
            &target,
            "generateIdToken",
            json!({"audience": "https://bookstore.test"}),
        )
        .await;
    assert_eq!(id_by_b.status, 200, "{}", id_by_b.body);
    let id_by_b = id_by_b.json()["token"].as_str().unwrap().to_owned();
    for (token, verifier) in [(&id_by_a, &b), (&id_by_b, &a)] {
        for path in ["/oauth2/v3/certs", "/oauth2/v1/certs"] {
            let claims = verify(token, &verifier.get(path).await);
            assert_eq!(claims["iss"], json!(ISSUER));
            assert_eq!(claims["aud"], json!("https://bookstore.test"));
        }
    }
    assert_eq!(
        a.get("/oauth2/v3/certs").await,
        b.get("/oauth2/v3/certs").await
    );

    // signJwt at A makes the target's server-managed key; B publishes it at once.
    let signed = a
        .credentials(
            &from_b,
            &target,
            "signJwt",
            json!({"payload": json!({"aud": "x"}).to_string()}),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let signed = signed.json()["signedJwt"].as_str().unwrap().to_owned();
    let encoded = iam::encode_path_segment(&target);
    for path in [
        format!("/service_accounts/v1/jwk/{encoded}"),
        format!("/robot/v1/metadata/x509/{encoded}"),
    ] {
        assert_eq!(verify(&signed, &b.get(&path).await)["aud"], json!("x"));
    }

    // The CLI revokes the API key: both refuse it at the next check.
    ok(&store, &["api-keys", "revoke", &api_key_id]);
    for replica in both {
        let reply = replica.check(&from_a, &api_key).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["valid"], json!(false), "{}", reply.body);
    }
    // A role revoked through the CLI: both refuse at the next request.
    role(
        &store,
        "revoke",
        &caller,
        CONTROLLER,
        &format!("services/{SERVICE}"),
    );
    for replica in both {
        for bearer in [&from_a, &self_signed] {
            let reply = replica.check(bearer, &api_key).await;
            assert_eq!(reply.status, 403, "{}", reply.body);
            assert!(reply.body.contains("does not hold"), "{}", reply.body);
        }
    }
    role(&store, "revoke", &caller, TOKEN_CREATOR, &target);
    for replica in both {
        let reply = replica
            .credentials(
                &from_b,
                &target,
                "generateIdToken",
                json!({"audience": "a"}),
            )
            .await;
        assert_eq!(reply.status, 403, "{}", reply.body);
    }
    // The key file's key disabled: no replica accepts its assertions any more.
    ok(&store, &["keys", "disable", &caller, &caller_kid]);
    for replica in both {
        let reply = replica
            .token(&caller_key, &caller, ("scope", CLOUD_PLATFORM))
            .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(
            reply.json()["error"],
            json!("invalid_grant"),
            "{}",
            reply.body
        );
    }
    // The account deleted: its access tokens stop working everywhere.
    ok(&store, &["accounts", "delete", &caller]);
    for replica in both {
        for bearer in [&from_a, &from_b] {
            let reply = replica
                .credentials(bearer, &target, "generateIdToken", json!({"audience": "a"}))
                .await;
            assert_eq!(reply.status, 401, "{}", reply.body);
        }
    }
    drop(a);
    drop(b);
}

/// Two replicas started at once and taking writes over HTTP (access tokens, each target's
/// first server-managed key by signJwt, ID tokens) while two CLI processes create, disable and
/// delete accounts and keys: every write lands once, nothing is left half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_cli_writing_at_once_lose_no_update() {
    let (ts, store, kek) = store_with_kek();
    let minter = account(&store, "minter-one");
    let (minter_key, _) = key_file(&ts, &store, &minter, "minter.json");
    let owner = account(&store, "key-owner");
    let owner_keys: Vec<String> = (0..3)
        .map(|i| key_file(&ts, &store, &owner, &format!("owner-{i}.json")).1)
        .collect();
    let targets: Vec<String> = (0..4)
        .map(|i| account(&store, &format!("target-{i}")))
        .collect();
    // Accounts the CLIs delete while the replicas sign for them.
    let doomed: Vec<String> = (0..3)
        .map(|i| account(&store, &format!("doomed-{i}")))
        .collect();
    for target in targets.iter().chain(&doomed) {
        role(&store, "grant", &minter, TOKEN_CREATOR, target);
    }

    // Both start at once: they must agree on one token-service signing key.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Replica::with_tokens(&store, &kek));
        let b = s.spawn(|| Replica::with_tokens(&store, &kek));
        (a.join().unwrap(), b.join().unwrap())
    });
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);

    let names: Vec<String> = (0..5).map(|i| format!("shared-account-{i}")).collect();
    let cli_writers: Vec<_> = (0..2)
        .map(|w| {
            let (store, names, doomed, owner, owner_keys) = (
                store.clone(),
                names.clone(),
                doomed.clone(),
                owner.clone(),
                owner_keys.clone(),
            );
            let dir = ts.dir().to_owned();
            tokio::task::spawn_blocking(move || {
                let mut created = 0;
                for (i, name) in names.iter().enumerate() {
                    if run(
                        &store,
                        &["accounts", "create", name, "--project", "my-project"],
                    )
                    .status
                    .success()
                    {
                        created += 1;
                    }
                    let out = run(&store, &["keys", "disable", &owner, &owner_keys[i % 3]]);
                    assert!(out.status.success(), "{out:?}");
                    let doomed = &doomed[i % doomed.len()];
                    let file = dir.join(format!("cli-{w}-{i}.json"));
                    // Recorded whole, or refused: the other CLI deletes the account.
                    let _ = run(
                        &store,
                        &[
                            "keys",
                            "create",
                            doomed,
                            "--algorithm",
                            "ES256",
                            "--out",
                            file.to_str().unwrap(),
                        ],
                    );
                    let _ = run(&store, &["accounts", "delete", doomed]);
                }
                created
            })
        })
        .collect();
    let http_writers: Vec<_> = (0..4)
        .map(|w| {
            let replica = if w % 2 == 0 { a.clone() } else { b.clone() };
            let (minter, minter_key, targets, doomed) = (
                minter.clone(),
                minter_key.clone(),
                targets.clone(),
                doomed.clone(),
            );
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                let mut signed = Vec::new();
                for i in 0..6 {
                    let bearer = replica.access_token(&minter_key, &minter).await;
                    let target = &targets[(w + i) % targets.len()];
                    let reply = replica
                        .credentials(&bearer, target, "signJwt", json!({"payload": "{}"}))
                        .await;
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    signed.push((
                        target.clone(),
                        reply.json()["signedJwt"].as_str().unwrap().to_owned(),
                    ));
                    let reply = replica
                        .credentials(
                            &bearer,
                            target,
                            "generateIdToken",
                            json!({"audience": "aud"}),
                        )
                        .await;
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    // A target being deleted: signed for whole (200), refused (403: its
                    // binding is gone), or not found (404: deleted between the role check and
                    // the signature); never a 500 of a half-made key.
                    let reply = replica
                        .credentials(
                            &bearer,
                            &doomed[i % doomed.len()],
                            "signJwt",
                            json!({"payload": "{}"}),
                        )
                        .await;
                    assert!(
                        matches!(reply.status, 200 | 403 | 404),
                        "{} {}",
                        reply.status,
                        reply.body
                    );
                    tokens.push(bearer);
                }
                (tokens, signed)
            })
        })
        .collect();

    let mut created = 0;
    for writer in cli_writers {
        created += writer.await.unwrap();
    }
    let mut tokens = Vec::new();
    let mut signed = Vec::new();
    for writer in http_writers {
        let (t, s) = writer.await.unwrap();
        tokens.extend(t);
        signed.extend(s);
    }

    assert_eq!(created, names.len(), "each account created exactly once");
    let count = |sql: &str| -> i64 { ts.query_raw(sql)[0].parse().unwrap() };
    // One token-service key, one server-managed key per target, whatever replica signed.
    assert_eq!(
        count("SELECT count(*)::text FROM managed_keys WHERE owner = 'token-service'"),
        1
    );
    for target in &targets {
        assert_eq!(
            count(&format!(
                "SELECT count(*)::text FROM managed_keys WHERE email = '{target}'"
            )),
            1,
            "{target}"
        );
    }
    // Every access token minted was recorded, once, and works at either replica.
    assert_eq!(
        count(&format!(
            "SELECT count(*)::text FROM access_tokens WHERE email = '{minter}'"
        )),
        i64::try_from(tokens.len()).unwrap()
    );
    for (i, bearer) in tokens.iter().enumerate() {
        let replica = if i % 2 == 0 { &b } else { &a };
        let reply = replica
            .credentials(
                bearer,
                &targets[0],
                "generateIdToken",
                json!({"audience": "aud"}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Every signed JWT verifies against its target's published keys, at either replica.
    for (target, jwt) in &signed {
        let path = format!(
            "/service_accounts/v1/jwk/{}",
            iam::encode_path_segment(target)
        );
        verify(jwt, &a.get(&path).await);
        verify(jwt, &b.get(&path).await);
    }
    // Nothing outlives its account; every key row is whole.
    for table in ["keys", "managed_keys", "access_tokens"] {
        assert_eq!(
            ts.query_raw(&format!(
                "SELECT email FROM {table} WHERE email IS NOT NULL \
                 AND email NOT IN (SELECT email FROM accounts)"
            )),
            Vec::<String>::new(),
            "{table}"
        );
    }
    for table in ["keys", "managed_keys"] {
        assert_eq!(
            ts.query_raw(&format!(
                "SELECT key_id FROM {table} WHERE public_key_pem NOT LIKE '-----BEGIN PUBLIC KEY-----%' \
                 OR certificate_pem NOT LIKE '-----BEGIN CERTIFICATE-----%'"
            )),
            Vec::<String>::new(),
            "{table}"
        );
    }
    for doomed in &doomed {
        assert_eq!(
            ts.query_raw(&format!(
                "SELECT email FROM accounts WHERE email = '{doomed}'"
            )),
            Vec::<String>::new()
        );
    }
    assert!(
        ts.query_raw(&format!(
            "SELECT key_id FROM keys WHERE email = '{owner}' AND disabled = 0"
        ))
        .is_empty()
    );
}

/// `/readyz` of `iam serve` follows its store: ready while PostgreSQL answers; 503 with the
/// reason when it refuses connections or stops answering (within the probe's timeout), while
/// `/healthz` stays 200; ready again once it is back — with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store() {
    let ts = TestStore::postgres();
    let relay = Relay::start(ts.postgres_target()).await;
    let url = ts.postgres_url_via(relay.addr());
    let replica = Replica::start(&url, &[]);
    let within = Duration::from_secs(30);

    let ready = wait_for_status(replica.admin, "/readyz", 200, within).await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["checks"]["store"], json!("ok"), "{ready}");
    assert_eq!(ready["checks"]["listener"], json!("ok"), "{ready}");

    // Stopped: connections refused at once.
    relay.set(RelayMode::Refuse);
    let down = wait_for_status(replica.admin, "/readyz", 503, within).await;
    let down: Value = serde_json::from_str(&down).unwrap();
    assert_eq!(down["status"], json!("NOT_READY"), "{down}");
    let why = down["checks"]["store"].as_str().unwrap();
    assert!(why.contains("IAM store"), "{down}");
    let (alive, _) = http_get(replica.admin, "/healthz").await;
    assert_eq!(alive, 200);

    relay.set(RelayMode::Pass);
    wait_for_status(replica.admin, "/readyz", 200, within).await;

    // Unreachable: connections accepted and never answered; the probe's timeout says so.
    relay.set(RelayMode::Hang);
    let hung = wait_for_status(replica.admin, "/readyz", 503, within).await;
    assert!(hung.contains("did not answer within"), "{hung}");

    relay.set(RelayMode::Pass);
    let back = wait_for_status(replica.admin, "/readyz", 200, within).await;
    assert!(back.contains("\"store\":\"ok\""), "{back}");
    // And it serves again.
    let (status, body) = http_get(
        replica.addr,
        "/service_accounts/v1/jwk/nobody%40my-project.iam.gserviceaccount.com",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = replica.process.sigterm_and_wait();
    assert!(status.success());
}
