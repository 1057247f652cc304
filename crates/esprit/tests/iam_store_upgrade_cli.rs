//! A store written by an older esprit on PostgreSQL, upgraded with its rows by `iam migrate`
//! and by `iam serve` at start, and `iam store copy` of a store whose token-service tables
//! hold rows (keys, the KEK check, an access token, a service binding), through the real
//! `esprit` binary.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use iam::{SCHEMA_VERSION, Store};
use testkit::{KeyServer, TestStore, cli, http_get, http1};

mod common;

use common::ESPRIT;
use common::store_cli::{NOW, SERVICE, ok, store_copy};

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
