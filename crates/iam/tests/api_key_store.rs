//! API keys in the SQLite store on temporary files: create, list, revoke, check, what is on
//! disk, and the migration of a store written before API keys existed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use iam::api_keys::{API_KEY_LEN, hash_api_key};
use iam::{ApiKeyCheck, IamError, Revocation, SCHEMA_VERSION, Store};
use testkit::TestStore;

const NOW: u64 = 1_750_000_000;

fn temp_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    (dir, path)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file SQLite keeps for the store (the database, its WAL and shared
/// memory), so nothing written escapes the search.
fn store_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn keys_are_created_listed_checked_and_revoked(ts: TestStore) {
    let path = ts.location();
    let mut store = Store::open(path).unwrap();
    assert!(store.api_keys(None).unwrap().is_empty());

    let (key, record) = store
        .create_api_key("my-project", Some("web client"), NOW)
        .unwrap();
    assert_eq!(key.len(), API_KEY_LEN);
    assert!(key.starts_with("AIza"));
    assert_eq!(record.project, "my-project");
    assert_eq!(record.name.as_deref(), Some("web client"));
    assert_eq!(record.prefix, key[..8]);
    assert_eq!(record.created, NOW);
    assert_eq!(record.revoked, None);
    let (other_key, other) = store
        .create_api_key("other-project", None, NOW + 1)
        .unwrap();
    assert_ne!(key, other_key);
    assert_ne!(record.id, other.id);
    assert_eq!(other.name, None);

    assert_eq!(
        store.api_keys(None).unwrap(),
        vec![record.clone(), other.clone()]
    );
    assert_eq!(
        store.api_keys(Some("my-project")).unwrap(),
        vec![record.clone()]
    );
    assert!(store.api_keys(Some("empty-project")).unwrap().is_empty());
    assert_eq!(store.api_key(&record.id).unwrap(), record);

    assert_eq!(
        store.check_api_key(&key).unwrap(),
        ApiKeyCheck::Valid {
            key_id: record.id.clone(),
            consumer_project: "my-project".into(),
        }
    );
    assert_eq!(
        store.check_api_key(&other_key).unwrap(),
        ApiKeyCheck::Valid {
            key_id: other.id.clone(),
            consumer_project: "other-project".into(),
        }
    );
    // Near misses are unknown: one character changed, truncated, extended, other case.
    let mut flipped = key.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for guess in [
        flipped.as_str(),
        &key[..38],
        &format!("{key}A"),
        &key.to_lowercase(),
        "",
        "AIza",
    ] {
        assert_eq!(
            store.check_api_key(guess).unwrap(),
            ApiKeyCheck::Unknown,
            "{guess}"
        );
    }

    assert_eq!(
        store.revoke_api_key(&record.id, NOW + 10).unwrap(),
        Revocation::Revoked
    );
    assert_eq!(
        store.check_api_key(&key).unwrap(),
        ApiKeyCheck::Revoked {
            key_id: record.id.clone()
        }
    );
    // Idempotent, keeping the first time.
    assert_eq!(
        store.revoke_api_key(&record.id, NOW + 20).unwrap(),
        Revocation::AlreadyRevoked { at: NOW + 10 }
    );
    assert_eq!(store.api_key(&record.id).unwrap().revoked, Some(NOW + 10));
    // The other key is untouched.
    assert!(store.check_api_key(&other_key).unwrap().is_valid());
}

fn errors_name_the_value_at_fault(ts: TestStore) {
    let path = ts.location();
    let mut store = Store::open(path).unwrap();
    for bad in ["proj", "My-project", "my_project", "project-"] {
        let err = store.create_api_key(bad, None, NOW).unwrap_err();
        assert!(
            matches!(&err, IamError::InvalidProjectId { id, .. } if id == bad),
            "{bad}: {err:?}"
        );
        assert!(matches!(
            store.api_keys(Some(bad)),
            Err(IamError::InvalidProjectId { .. })
        ));
    }
    let err = store
        .create_api_key("my-project", Some("tab\there"), NOW)
        .unwrap_err();
    assert!(matches!(err, IamError::InvalidApiKeyName { .. }), "{err:?}");
    assert!(store.api_keys(None).unwrap().is_empty());

    let unknown = "00000000-0000-4000-8000-000000000000";
    let err = store.revoke_api_key(unknown, NOW).unwrap_err();
    assert!(
        matches!(&err, IamError::UnknownApiKey(id) if id == unknown),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("API key {unknown} does not exist (see `esprit iam api-keys list` for the ids)")
    );
    assert!(matches!(
        store.api_key(unknown),
        Err(IamError::UnknownApiKey(_))
    ));

    // The key itself given as the id: refused without repeating it.
    let (key, _) = store.create_api_key("my-project", None, NOW).unwrap();
    let err = store.revoke_api_key(&key, NOW).unwrap_err();
    assert!(matches!(err, IamError::ApiKeyGivenForId { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains(&key), "{message}");
    assert!(message.contains(&key[..8]), "{message}");
    assert!(store.check_api_key(&key).unwrap().is_valid());
}

#[test]
fn the_store_keeps_the_hash_never_the_key() {
    let (dir, path) = temp_store();
    let mut keys = Vec::new();
    {
        let mut store = Store::open(&path).unwrap();
        for i in 0..5 {
            keys.push(
                store
                    .create_api_key("my-project", Some(&format!("key {i}")), NOW)
                    .unwrap(),
            );
        }
        store.revoke_api_key(&keys[0].1.id, NOW).unwrap();
        // Checking a key does not write it anywhere either.
        assert!(store.check_api_key(&keys[1].0).unwrap().is_valid());
        let bytes = store_bytes(dir.path());
        for (key, record) in &keys {
            assert!(
                !contains(&bytes, key.as_bytes()),
                "key {} on disk",
                record.id
            );
            // Positive control: the search does find what is stored.
            assert!(
                contains(&bytes, &hash_api_key(key)),
                "hash of {}",
                record.id
            );
            assert!(contains(&bytes, record.id.as_bytes()));
        }
    }
    // After the WAL is folded into the database on close, still no key.
    let bytes = store_bytes(dir.path());
    for (key, record) in &keys {
        assert!(
            !contains(&bytes, key.as_bytes()),
            "key {} on disk",
            record.id
        );
        // Not even the key without its fixed `AIza` start.
        assert!(!contains(&bytes, &key.as_bytes()[4..]));
        assert!(contains(&bytes, &hash_api_key(key)));
    }
    // Reopened, the keys still check.
    let store = Store::open(&path).unwrap();
    assert!(store.check_api_key(&keys[4].0).unwrap().is_valid());
    assert_eq!(
        store.check_api_key(&keys[0].0).unwrap(),
        ApiKeyCheck::Revoked {
            key_id: keys[0].1.id.clone()
        }
    );
}

/// Schema version 1 exactly as the previous esprit wrote it (before API keys).
const SCHEMA_V1: &str = "CREATE TABLE accounts (
        email      TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        unique_id  TEXT NOT NULL UNIQUE,
        created    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE keys (
        key_id          TEXT PRIMARY KEY,
        email           TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        algorithm       TEXT NOT NULL,
        public_key_pem  TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        created         INTEGER NOT NULL,
        disabled        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX keys_by_email ON keys(email);
    PRAGMA user_version = 1;";

#[test]
fn a_version_1_store_migrates_and_keeps_its_accounts_and_keys() {
    let (dir, path) = temp_store();
    // A v1 store with an account and a key, written by the v1 schema alone.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO accounts VALUES ('old-account@my-project.iam.gserviceaccount.com',
             'old-account', 'my-project', '100000000000000000001', 1700000000)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO keys VALUES (?1, 'old-account@my-project.iam.gserviceaccount.com',
             'ES256', 'PUBLIC', 'CERT', 1700000000, 1)",
            ["a".repeat(40)],
        )
        .unwrap();
    }
    assert_eq!(SCHEMA_VERSION, 5);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let account = store
        .account("old-account@my-project.iam.gserviceaccount.com")
        .unwrap();
    assert_eq!(account.unique_id, "100000000000000000001");
    assert_eq!(account.created, 1_700_000_000);
    let keys = store.keys(&account.email).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key_id, "a".repeat(40));
    assert_eq!(keys[0].state, iam::KeyStatus::Disabled);

    // API keys work in the migrated file, and survive reopening.
    let (key, record) = store.create_api_key("my-project", None, NOW).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.check_api_key(&key).unwrap(),
        ApiKeyCheck::Valid {
            key_id: record.id,
            consumer_project: "my-project".into()
        }
    );
    drop(store);

    // The table and its indexes are exactly the migration's.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'api_keys' ORDER BY name")
        .unwrap();
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        names,
        [
            "api_keys",
            "api_keys_by_project",
            "sqlite_autoindex_api_keys_1",
            "sqlite_autoindex_api_keys_2"
        ]
    );
    // The lookup by hash uses an index, not a scan of every key.
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id, project, revoked FROM api_keys WHERE key_hash = ?1",
            [vec![0u8; 32]],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("USING INDEX"), "{plan}");
    drop(dir);
}

testkit::store_tests!(
    keys_are_created_listed_checked_and_revoked,
    errors_name_the_value_at_fault,
);
