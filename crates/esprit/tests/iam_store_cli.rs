//! The IAM store on PostgreSQL through the real `esprit` binary: `--store postgres://…`,
//! concurrent writers (CLI processes and in-process stores; also on SQLite) losing no update, concurrent
//! `iam migrate`, a store of a newer version refused, and `iam store copy` from SQLite into
//! PostgreSQL with a key server on the copy answering as on the original.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::thread;

use iam::{KeyStatus, Revocation, SCHEMA_VERSION, Store};
use testkit::{KeyServer, TestStore, cli, http_get, http1};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");
const NOW: u64 = 1_750_000_000;
const SERVICE: &str = "bookstore.endpoints.my-project.cloud.goog";

/// `esprit iam ARGS --store STORE`.
fn iam(ts: &TestStore, args: &[&str]) -> Command {
    let mut command = cli::command(ESPRIT);
    command.arg("iam").args(args).arg("--store").arg(ts.arg());
    command
}

fn run(ts: &TestStore, args: &[&str]) -> Output {
    iam(ts, args).output().unwrap()
}

fn ok(ts: &TestStore, args: &[&str]) -> String {
    cli::ok(&mut iam(ts, args))
}

/// `esprit iam store copy --from FROM --to TO`.
fn store_copy(from: impl AsRef<OsStr>, to: String) -> Command {
    let mut command = cli::command(ESPRIT);
    command
        .args(["iam", "store", "copy", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to);
    command
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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

/// Schema version 4 exactly as esprit wrote it in PostgreSQL (the first four migrations through
/// `postgres_ddl`, and the version row), before the service role bindings of version 5.
const PG_SCHEMA_V4: &str = r#"CREATE TABLE esprit_iam_schema (
        id      BIGINT PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO esprit_iam_schema (id, version) VALUES (1, 4);
    CREATE TABLE accounts (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        email      TEXT COLLATE "C" PRIMARY KEY,
        account_id TEXT COLLATE "C" NOT NULL,
        project_id TEXT COLLATE "C" NOT NULL,
        unique_id  TEXT COLLATE "C" NOT NULL UNIQUE,
        created    BIGINT NOT NULL
    );
    CREATE TABLE keys (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        key_id          TEXT COLLATE "C" PRIMARY KEY,
        email           TEXT COLLATE "C" NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        algorithm       TEXT COLLATE "C" NOT NULL,
        public_key_pem  TEXT COLLATE "C" NOT NULL,
        certificate_pem TEXT COLLATE "C" NOT NULL,
        created         BIGINT NOT NULL,
        disabled        BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX keys_by_email ON keys(email);
    CREATE TABLE api_keys (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        id       TEXT COLLATE "C" PRIMARY KEY,
        key_hash BYTEA NOT NULL UNIQUE,
        prefix   TEXT COLLATE "C" NOT NULL,
        project  TEXT COLLATE "C" NOT NULL,
        name     TEXT COLLATE "C",
        created  BIGINT NOT NULL,
        revoked  BIGINT
    );
    CREATE INDEX api_keys_by_project ON api_keys(project, created);
    CREATE TABLE managed_keys (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        key_id             TEXT COLLATE "C" PRIMARY KEY,
        owner              TEXT COLLATE "C" NOT NULL CHECK (owner IN ('token-service', 'account')),
        email              TEXT COLLATE "C" REFERENCES accounts(email) ON DELETE CASCADE,
        algorithm          TEXT COLLATE "C" NOT NULL,
        sealed_private_key BYTEA NOT NULL,
        public_key_pem     TEXT COLLATE "C" NOT NULL,
        certificate_pem    TEXT COLLATE "C" NOT NULL,
        created            BIGINT NOT NULL,
        sign_from          BIGINT NOT NULL,
        sign_until         BIGINT NOT NULL,
        publish_until      BIGINT NOT NULL,
        CHECK ((owner = 'token-service') = (email IS NULL))
    );
    CREATE INDEX managed_keys_by_email ON managed_keys(email);
    CREATE TABLE kek_check (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        id          BIGINT PRIMARY KEY CHECK (id = 1),
        check_value TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE access_tokens (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        token_hash BYTEA PRIMARY KEY,
        email      TEXT COLLATE "C" NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        scopes     TEXT COLLATE "C" NOT NULL,
        expires    BIGINT NOT NULL
    );
    CREATE INDEX access_tokens_by_expiry ON access_tokens(expires);
    CREATE INDEX access_tokens_by_email ON access_tokens(email);
    CREATE TABLE role_bindings (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
        member   TEXT COLLATE "C" NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        role     TEXT COLLATE "C" NOT NULL,
        resource TEXT COLLATE "C" NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        created  BIGINT NOT NULL,
        PRIMARY KEY (member, role, resource)
    );
    CREATE INDEX role_bindings_by_resource ON role_bindings(resource, role);"#;

const OLD_ACCOUNT: &str = "old-account@my-project.iam.gserviceaccount.com";
const OLD_CALLER: &str = "old-caller@my-project.iam.gserviceaccount.com";
const OLD_API_KEY: &str = "AIzaSyOldKeyOfAVersion4Store000000000000";
const OLD_ACCESS_TOKEN: &str = "esprit-at.an-access-token-of-a-version-4-store";

/// A PostgreSQL store at schema version 4, as an older esprit left it: two accounts, a key of
/// the first (real, so that it can be served), an API key, a role binding and an access token
/// (hashes computed by PostgreSQL: SHA-256 of the text, as esprit stores them). The key's id.
fn version_4_store(ts: &TestStore) -> String {
    let account = iam::Account {
        email: OLD_ACCOUNT.into(),
        account_id: "old-account".into(),
        project_id: "my-project".into(),
        unique_id: "100000000000000000001".into(),
        created: NOW,
    };
    let key = iam::new_key(
        &account,
        iam::KeyAlgorithm::Es256,
        &iam::KeyServerUrl::default(),
        NOW,
    )
    .unwrap()
    .stored;
    ts.execute_raw(PG_SCHEMA_V4);
    ts.execute_raw(&format!(
        "INSERT INTO accounts (email, account_id, project_id, unique_id, created) VALUES
           ('{OLD_ACCOUNT}', 'old-account', 'my-project', '100000000000000000001', {NOW}),
           ('{OLD_CALLER}', 'old-caller', 'my-project', '100000000000000000002', {NOW});
         INSERT INTO keys (key_id, email, algorithm, public_key_pem, certificate_pem, created,
                           disabled)
           VALUES ('{}', '{OLD_ACCOUNT}', 'ES256', '{}', '{}', {NOW}, 0);
         INSERT INTO api_keys (id, key_hash, prefix, project, name, created, revoked)
           VALUES ('old-api-key-id', sha256(convert_to('{OLD_API_KEY}', 'UTF8')), 'AIzaSyOl',
                   'my-project', 'old', {NOW}, NULL);
         INSERT INTO role_bindings (member, role, resource, created)
           VALUES ('{OLD_CALLER}', 'roles/iam.serviceAccountTokenCreator', '{OLD_ACCOUNT}',
                   {NOW});
         INSERT INTO access_tokens (token_hash, email, scopes, expires)
           VALUES (sha256(convert_to('{OLD_ACCESS_TOKEN}', 'UTF8')), '{OLD_CALLER}',
                   'https://www.googleapis.com/auth/iam', 4102444800);",
        key.key_id, key.public_key_pem, key.certificate_pem
    ));
    key.key_id
}

/// A PostgreSQL store an older esprit left at schema version 4 is upgraded — by `esprit iam
/// migrate`, and by `esprit iam serve` at start — with every row kept and readable: accounts,
/// the served key, the API key, the role binding and the access token; the new version's table
/// works on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_postgres_store_is_upgraded_with_its_rows() {
    assert_eq!(
        SCHEMA_VERSION, 5,
        "add the newer migrations' tables to this test"
    );
    let ts = TestStore::postgres();
    let key_id = version_4_store(&ts);
    let migrated = ok(&ts, &["migrate"]);
    // The fixture is what esprit wrote: once migrated, the schema is a new store's.
    let fresh = TestStore::postgres();
    ok(&fresh, &["migrate"]);
    assert_eq!(
        migrated.trim(),
        format!("{}: schema version 4 -> 5", ts.location())
    );
    assert_eq!(
        ts.query_raw("SELECT version::text FROM esprit_iam_schema"),
        ["5"]
    );
    let schema = |ts: &TestStore| {
        ts.query_raw(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' ||
                    coalesce(collation_name, '-') || ' ' || is_nullable || ' ' ||
                    coalesce(column_default, '-') || ' ' || is_identity
             FROM information_schema.columns WHERE table_schema = current_schema()
             ORDER BY table_name, ordinal_position",
        )
    };
    let indexes = "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                   ORDER BY indexname";
    assert_eq!(schema(&ts), schema(&fresh));
    assert_eq!(ts.query_raw(indexes), fresh.query_raw(indexes));
    let listed = ok(&ts, &["accounts", "list"]);
    assert!(
        listed.contains(OLD_ACCOUNT) && listed.contains(OLD_CALLER),
        "{listed}"
    );
    let keys = ok(&ts, &["keys", "list", OLD_ACCOUNT]);
    assert!(keys.contains(&key_id), "{keys}");
    let roles = ok(&ts, &["roles", "list"]);
    assert!(
        roles.contains(OLD_CALLER) && roles.contains("roles/iam.serviceAccountTokenCreator"),
        "{roles}"
    );
    let mut store = Store::open(ts.location()).unwrap();
    assert_eq!(
        store.check_api_key(OLD_API_KEY).unwrap(),
        iam::ApiKeyCheck::Valid {
            key_id: "old-api-key-id".into(),
            consumer_project: "my-project".into()
        }
    );
    // The access token is still its owner's.
    let tokens = iam::TokenService::open(
        ts.location(),
        iam::TokenServiceSettings::new("http://127.0.0.1:1", iam::Kek::generate().unwrap()),
    )
    .unwrap();
    let (owner, scopes) = tokens
        .access_token_owner(OLD_ACCESS_TOKEN)
        .unwrap()
        .unwrap();
    assert_eq!(
        (owner.email.as_str(), scopes),
        (
            OLD_CALLER,
            vec!["https://www.googleapis.com/auth/iam".to_owned()]
        )
    );
    // Version 5's table, on the upgraded store.
    store
        .grant_service_role(
            OLD_CALLER,
            iam::ServiceRole::ServiceController,
            SERVICE,
            NOW,
        )
        .unwrap();
    drop(store);

    // `iam serve` upgrades another such store at start and serves its rows.
    let ts = TestStore::postgres();
    let key_id = version_4_store(&ts);
    let mut server = cli::iam_serve(ESPRIT, ts.arg(), &["--check-auth", "off"]);
    server.discard_output();
    let addr: std::net::SocketAddr = server
        .addr
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    // It prints its address before opening the store; the first answer comes after.
    let (status, body) = http_get(
        addr,
        &format!(
            "/service_accounts/v1/jwk/{}",
            iam::encode_path_segment(OLD_ACCOUNT)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&key_id), "{body}");
    assert_eq!(
        ts.query_raw("SELECT version::text FROM esprit_iam_schema"),
        ["5"]
    );
    let reply = http1(
        addr,
        "POST",
        &format!("/v1/services/{SERVICE}:check"),
        &[("content-type", "application/json")],
        serde_json::json!({ "api_key": OLD_API_KEY })
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"valid\":true"), "{}", reply.body);
    let (status, _) = server.sigterm_and_wait();
    assert!(status.success());
}

/// `iam store copy` of a store whose token-service tables are not empty — a token-service key
/// and an account's server-managed key (with the KEK's check value), an access token, and a
/// Service Controller binding — carries them all: on the copy the same KEK is accepted and
/// another refused, the same token-service key signs, the access token authenticates a check,
/// and the binding authorises it (a check refused once it is revoked on the copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_carries_token_service_keys_access_tokens_and_service_bindings() {
    let from = TestStore::sqlite();
    let to = TestStore::postgres();
    let kek = iam::Kek::generate().unwrap();
    let settings =
        |kek: &iam::Kek| iam::TokenServiceSettings::new("http://127.0.0.1:1", kek.clone());
    let mut store = Store::open(from.location()).unwrap();
    let proxy = store
        .create_account("proxy-one", "my-project", NOW)
        .unwrap();
    store
        .grant_service_role(
            &proxy.email,
            iam::ServiceRole::ServiceController,
            SERVICE,
            NOW,
        )
        .unwrap();
    let (api_key, _) = store.create_api_key("consumer-project", None, NOW).unwrap();
    let tokens = iam::TokenService::open(from.location(), settings(&kek)).unwrap();
    let (signing_kid, _) = tokens.sign_jwt_as(&proxy, &serde_json::Map::new()).unwrap();
    let (token, _) = tokens
        .issue_access_token(
            &proxy,
            &["https://www.googleapis.com/auth/servicecontrol".to_owned()],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let id_token = tokens
        .issue_id_token(&proxy, "https://svc.example.com", false)
        .unwrap();
    drop(tokens);
    drop(store);

    let copied = cli::ok(&mut store_copy(from.arg(), to.arg()));
    assert_eq!(
        copied.lines().collect::<Vec<_>>(),
        [
            "accounts: 1 rows",
            "keys: 0 rows",
            "api_keys: 1 rows",
            "managed_keys: 2 rows",
            "kek_check: 1 rows",
            "access_tokens: 1 rows",
            "role_bindings: 0 rows",
            "service_role_bindings: 1 rows",
        ]
    );

    // The KEK: another is refused, the same one accepted.
    let err = iam::TokenService::open(to.location(), settings(&iam::Kek::generate().unwrap()))
        .unwrap_err();
    assert!(matches!(err, iam::IamError::KekMismatch { .. }), "{err:?}");
    let copy_tokens = iam::TokenService::open(to.location(), settings(&kek)).unwrap();
    // The token service's key came along: an ID token of the original verifies against the
    // copy's published keys; the account's server-managed key is served by the copy.
    let header = jose::Jwt::parse(&id_token).unwrap().header().clone();
    assert!(copy_tokens.jwks().unwrap().contains(&header.kid.unwrap().0));
    let copy_store = Store::open(to.location()).unwrap();
    assert_eq!(
        copy_store
            .served_keys(&proxy.email)
            .unwrap()
            .iter()
            .map(|k| k.key_id.clone())
            .collect::<Vec<_>>(),
        [signing_kid]
    );
    drop(copy_store);

    // The access token authenticates a check on the copy, authorised by the copied binding.
    let server = KeyServer::start_checked(
        to.location(),
        Some(copy_tokens.clone()),
        iam::CheckAuth::required(),
    )
    .await;
    let checked = checked_by(&server, &token, &api_key).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert!(checked.body.contains("\"valid\":true"), "{}", checked.body);
    Store::open(to.location())
        .unwrap()
        .revoke_service_role(&proxy.email, iam::ServiceRole::ServiceController, SERVICE)
        .unwrap();
    let refused = checked_by(&server, &token, &api_key).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    server.stop().await;
}

/// An API-key check of `key` authenticated with the access token `token`.
async fn checked_by(server: &KeyServer, token: &str, key: &str) -> testkit::HttpReply {
    let authorization = format!("Bearer {token}");
    http1(
        server.addr,
        "POST",
        &format!("/v1/services/{SERVICE}:check"),
        &[
            ("content-type", "application/json"),
            ("authorization", authorization.as_str()),
        ],
        serde_json::json!({ "api_key": key })
            .to_string()
            .into_bytes(),
    )
    .await
}
