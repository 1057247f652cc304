//! The IAM store on PostgreSQL through the real `esprit` binary: `--store postgres://…`,
//! concurrent writers (CLI processes and in-process stores; also on SQLite) losing no update, concurrent
//! `iam migrate`, a store of a newer version refused, and `iam store copy` from SQLite into
//! PostgreSQL with a key server on the copy answering as on the original.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::process::Output;
use std::thread;

use iam::{KeyStatus, Revocation, SCHEMA_VERSION, Store};
use testkit::{KeyServer, TestStore, cli, http_get, http1};

mod common;

use common::ESPRIT;
use common::store_cli::{NOW, SERVICE, ok, run, stderr, store_copy};

/// Four writers at once on one store, PostgreSQL or SQLite — two `esprit` processes (each
/// command a process of its own) and two in-process stores, as two key servers hold — create
/// the same accounts, revoke the same API keys, disable the same keys and add keys to accounts
/// being deleted. Every conflict has exactly one winner (no revocation or account is written
/// twice or lost) and no key is left without its account.
fn concurrent_writers_lose_no_update(ts: TestStore) {
    let mut store = Store::open(ts.location()).unwrap();
    let owner = store
        .create_account("key-owner", "my-project", NOW)
        .unwrap()
        .email;
    let api_keys: Vec<String> = (0..6)
        .map(|_| store.create_api_key("my-project", None, NOW).unwrap().1.id)
        .collect();
    let keys: Vec<String> = (0..3)
        .map(|i| {
            ok(
                &ts,
                &[
                    "keys",
                    "create",
                    &owner,
                    "--algorithm",
                    "ES256",
                    "--out",
                    ts.file(&format!("owner-{i}.json")).to_str().unwrap(),
                ],
            )
            .trim()
            .to_owned()
        })
        .collect();
    let doomed: Vec<String> = (0..3)
        .map(|i| {
            store
                .create_account(&format!("doomed-{i}"), "my-project", NOW)
                .unwrap()
                .email
        })
        .collect();
    drop(store);
    let names: Vec<String> = (0..5).map(|i| format!("shared-account-{i}")).collect();

    // Each writer returns (accounts it created, API keys it revoked first).
    let results: Vec<(usize, usize)> = thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..2 {
            let (ts, names, api_keys, keys, owner, doomed) =
                (&ts, &names, &api_keys, &keys, &owner, &doomed);
            writers.push(s.spawn(move || {
                let (mut created, mut revoked) = (0, 0);
                for (i, name) in names.iter().enumerate() {
                    if run(ts, &["accounts", "create", name, "--project", "my-project"])
                        .status
                        .success()
                    {
                        created += 1;
                    }
                    let out = run(ts, &["api-keys", "revoke", &api_keys[i]]);
                    assert!(out.status.success(), "{}", stderr(&out));
                    if stderr(&out).starts_with("revoked API key") {
                        revoked += 1;
                    }
                    let key = &keys[i % keys.len()];
                    let out = run(ts, &["keys", "disable", owner, key]);
                    assert!(out.status.success(), "{}", stderr(&out));
                    // A key for an account the others delete: recorded whole, or refused.
                    let doomed = &doomed[i % doomed.len()];
                    let file = ts.file(&format!("cli-{w}-{i}.json"));
                    let _ = run(
                        ts,
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
                }
                (created, revoked)
            }));
        }
        for _ in 0..2 {
            let (ts, names, api_keys, keys, owner, doomed) =
                (&ts, &names, &api_keys, &keys, &owner, &doomed);
            writers.push(s.spawn(move || {
                let mut store = Store::open(ts.location()).unwrap();
                let (mut created, mut revoked) = (0, 0);
                for (i, name) in names.iter().enumerate() {
                    match store.create_account(name, "my-project", NOW) {
                        Ok(_) => created += 1,
                        Err(iam::IamError::AccountExists(_)) => {}
                        Err(err) => panic!("{err:?}"),
                    }
                    if store.revoke_api_key(&api_keys[i], NOW + 1).unwrap() == Revocation::Revoked {
                        revoked += 1;
                    }
                    store
                        .set_key_state(owner, &keys[i % keys.len()], KeyStatus::Disabled)
                        .unwrap();
                    match store.delete_account(&doomed[i % doomed.len()]) {
                        Ok(()) | Err(iam::IamError::UnknownAccount(_)) => {}
                        Err(err) => panic!("{err:?}"),
                    }
                }
                (created, revoked)
            }));
        }
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let created: usize = results.iter().map(|r| r.0).sum();
    let revoked: usize = results.iter().map(|r| r.1).sum();
    assert_eq!(created, names.len(), "each account created exactly once");
    assert_eq!(revoked, names.len(), "each API key revoked exactly once");
    let store = Store::open(ts.location()).unwrap();
    for name in &names {
        store
            .account(&format!("{name}@my-project.iam.gserviceaccount.com"))
            .unwrap();
    }
    for (i, id) in api_keys.iter().enumerate() {
        let key = store.api_key(id).unwrap();
        assert_eq!(key.revoked.is_some(), i < names.len(), "{key:?}");
    }
    assert!(
        store
            .keys(&owner)
            .unwrap()
            .iter()
            .all(|k| k.state == KeyStatus::Disabled)
    );
    // No key outlives its account; every recorded key is whole.
    assert_eq!(
        ts.query_raw("SELECT key_id FROM keys WHERE email NOT IN (SELECT email FROM accounts)"),
        Vec::<String>::new()
    );
    assert_eq!(
        ts.query_raw(
            "SELECT key_id FROM keys WHERE public_key_pem NOT LIKE '-----BEGIN PUBLIC KEY-----%' \
             OR certificate_pem NOT LIKE '-----BEGIN CERTIFICATE-----%'"
        ),
        Vec::<String>::new()
    );
    for doomed in &doomed {
        assert!(store.account(doomed).is_err(), "{doomed} was deleted");
    }
}

testkit::store_tests!(concurrent_writers_lose_no_update);

/// Two `esprit iam migrate` at once on a new PostgreSQL database: one migrates, the other
/// waits for it and finds the schema up to date; neither fails.
#[test]
fn concurrent_migrations_on_postgres_take_turns() {
    let ts = TestStore::postgres();
    let outs: Vec<Output> = thread::scope(|s| {
        let runs: Vec<_> = (0..2).map(|_| s.spawn(|| run(&ts, &["migrate"]))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut lines: Vec<String> = outs
        .iter()
        .map(|out| {
            assert!(out.status.success(), "{}", stderr(out));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    lines.sort();
    let store = ts.location().to_string();
    assert_eq!(
        lines,
        vec![
            format!("{store}: schema version 0 -> {SCHEMA_VERSION}"),
            format!("{store}: schema version {SCHEMA_VERSION} (already up to date)"),
        ]
    );
}

/// A PostgreSQL store written by a newer esprit is refused by every command, naming both
/// versions; nothing in it is changed.
#[test]
fn a_newer_postgres_store_is_refused() {
    let ts = TestStore::postgres();
    ok(&ts, &["migrate"]);
    ts.set_schema_version(SCHEMA_VERSION + 1);
    for args in [
        &["accounts", "list"][..],
        &["migrate"],
        &[
            "accounts",
            "create",
            "new-account",
            "--project",
            "my-project",
        ],
    ] {
        let out = run(&ts, args);
        let err = cli::assert_fails("a newer store", &out, 1);
        assert!(
            err.contains(&format!(
                "the IAM store has schema version {}, newer than this esprit supports ({SCHEMA_VERSION})",
                SCHEMA_VERSION + 1
            )),
            "{err}"
        );
    }
    assert_eq!(
        ts.query_raw("SELECT email FROM accounts"),
        Vec::<String>::new()
    );
}

async fn check(server: &KeyServer, key: &str) -> String {
    let body = serde_json::json!({ "api_key": key }).to_string();
    let reply = http1(
        server.addr,
        "POST",
        &format!("/v1/services/{SERVICE}:check"),
        &[("content-type", "application/json")],
        body.into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// `iam store copy` from SQLite into PostgreSQL copies every table (counts printed), refuses a
/// target that holds rows and a source of another schema version, and a key server on the
/// copy answers the same key documents and API-key checks as one on the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_from_sqlite_to_postgres_serves_the_same_answers() {
    let from = TestStore::sqlite();
    let to = TestStore::postgres();
    let email = ok(
        &from,
        &[
            "accounts",
            "create",
            "copied-account",
            "--project",
            "my-project",
        ],
    )
    .trim()
    .to_owned();
    let other = ok(
        &from,
        &[
            "accounts",
            "create",
            "other-account",
            "--project",
            "my-project",
        ],
    )
    .trim()
    .to_owned();
    for (i, algorithm) in ["RS256", "ES256"].iter().enumerate() {
        let out = from.file(&format!("k{i}.json"));
        ok(
            &from,
            &[
                "keys",
                "create",
                &email,
                "--algorithm",
                algorithm,
                "--out",
                out.to_str().unwrap(),
            ],
        );
    }
    let disabled = ok(
        &from,
        &[
            "keys",
            "create",
            &email,
            "--algorithm",
            "ES256",
            "--out",
            from.file("k2.json").to_str().unwrap(),
        ],
    )
    .trim()
    .to_owned();
    ok(&from, &["keys", "disable", &email, &disabled]);
    let valid = ok(&from, &["api-keys", "create", "--project", "my-project"])
        .trim()
        .to_owned();
    let revoked = ok(&from, &["api-keys", "create", "--project", "my-project"])
        .trim()
        .to_owned();
    let revoked_id = Store::open(from.location())
        .unwrap()
        .check_api_key(&revoked)
        .unwrap();
    let iam::ApiKeyCheck::Valid { key_id, .. } = revoked_id else {
        panic!("{revoked_id:?}")
    };
    ok(&from, &["api-keys", "revoke", &key_id]);
    ok(
        &from,
        &[
            "roles",
            "grant",
            "--member",
            &format!("serviceAccount:{other}"),
            "--role",
            "roles/iam.serviceAccountTokenCreator",
            "--resource",
            &email,
        ],
    );

    let copied = cli::ok(&mut store_copy(from.arg(), to.arg()));
    assert_eq!(
        copied.lines().collect::<Vec<_>>(),
        [
            "accounts: 2 rows",
            "keys: 3 rows",
            "api_keys: 2 rows",
            "managed_keys: 0 rows",
            "kek_check: 0 rows",
            "access_tokens: 0 rows",
            "role_bindings: 1 rows",
            "service_role_bindings: 0 rows",
        ]
    );
    // Again: the target now holds rows.
    let out = store_copy(from.arg(), to.arg()).output().unwrap();
    let err = cli::assert_fails("a copy into a full store", &out, 1);
    assert!(
        err.contains("is not empty (table accounts has 2 rows)"),
        "{err}"
    );
    // A source of another version is refused before anything is written.
    let old = TestStore::sqlite();
    ok(&old, &["migrate"]);
    old.set_schema_version(SCHEMA_VERSION - 1);
    let empty = TestStore::postgres();
    let out = store_copy(old.arg(), empty.arg()).output().unwrap();
    let err = cli::assert_fails("a copy of an older store", &out, 1);
    assert!(
        err.contains(&format!(
            "has schema version {}, this esprit writes version {SCHEMA_VERSION}: run `esprit iam migrate",
            SCHEMA_VERSION - 1
        )),
        "{err}"
    );

    // A source that does not exist is not created.
    let missing = from.file("missing.db");
    let out = store_copy(&missing, empty.arg()).output().unwrap();
    let err = cli::assert_fails("a copy of a missing store", &out, 1);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists());

    // Both stores answer alike.
    let original = KeyServer::start(from.location()).await;
    let copy = KeyServer::start(to.location()).await;
    let encoded = iam::encode_path_segment(&email);
    for path in [
        format!("/service_accounts/v1/jwk/{encoded}"),
        format!("/robot/v1/metadata/x509/{encoded}"),
    ] {
        let (a, b) = (
            http_get(original.addr, &path).await,
            http_get(copy.addr, &path).await,
        );
        assert_eq!(a.0, 200, "{path}: {}", a.1);
        assert_eq!(a, b, "{path}");
    }
    for key in [
        &valid,
        &revoked,
        &"AIzaSyNotAKeyOfThisStore0000000000000000".to_owned(),
    ] {
        assert_eq!(check(&original, key).await, check(&copy, key).await);
    }
    assert!(check(&copy, &valid).await.contains("\"valid\":true"));
    assert!(!check(&copy, &revoked).await.contains("\"valid\":true"));
    let listed = |ts: &TestStore| ok(ts, &["roles", "list", "--json"]);
    assert_eq!(listed(&from), listed(&to));
    original.stop().await;
    copy.stop().await;
}

/// `esprit iam serve --store postgres://… --store-pool-size 2 --store-pool-wait 250ms` as a
/// process: it migrates the new database at start and serves what the CLI writes into it.
#[tokio::test]
async fn iam_serve_on_postgres_with_pool_flags_serves_the_cli_s_writes() {
    let ts = TestStore::postgres();
    let mut server = cli::iam_serve(
        ESPRIT,
        ts.arg(),
        &["--store-pool-size", "2", "--store-pool-wait", "250ms"],
    );
    server.discard_output();
    let addr: std::net::SocketAddr = server
        .addr
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let email = ok(
        &ts,
        &[
            "accounts",
            "create",
            "served-account",
            "--project",
            "my-project",
        ],
    )
    .trim()
    .to_owned();
    let key = ok(
        &ts,
        &[
            "keys",
            "create",
            &email,
            "--out",
            ts.file("k.json").to_str().unwrap(),
        ],
    )
    .trim()
    .to_owned();
    let path = format!(
        "/service_accounts/v1/jwk/{}",
        iam::encode_path_segment(&email)
    );
    for _ in 0..4 {
        let (status, body) = http_get(addr, &path).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&key), "{body}");
    }
    ok(&ts, &["keys", "disable", &email, &key]);
    let (status, body) = http_get(addr, &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&key), "{body}");
    let (status, _) = server.sigterm_and_wait();
    assert!(status.success());
}

/// A malformed store URL is refused without being repeated (it may hold a password), and an
/// unreachable server is named without its password. (TLS: iam_store_tls.rs.)
#[test]
fn malformed_or_unreachable_postgres_urls_are_refused_plainly() {
    let out = cli::command(ESPRIT)
        .args([
            "iam",
            "accounts",
            "list",
            "--store",
            "postgres://esprit:s3cret@db.invalid/iam?sslmode=sometimes",
        ])
        .output()
        .unwrap();
    let err = cli::assert_fails("a malformed URL", &out, 1);
    assert!(err.contains("invalid PostgreSQL store URL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // An unreachable server: the URL is named without its password.
    let out = cli::command(ESPRIT)
        .args([
            "iam",
            "accounts",
            "list",
            "--store",
            "postgres://esprit:s3cret@127.0.0.1:1/iam?connect_timeout=5",
        ])
        .output()
        .unwrap();
    let err = cli::assert_fails("an unreachable server", &out, 1);
    assert!(
        err.contains("cannot connect to the IAM store postgres://esprit:***@127.0.0.1:1/iam"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
