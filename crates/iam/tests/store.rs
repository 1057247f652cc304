//! The store on both backends (a SQLite file, a PostgreSQL database): accounts, keys, states,
//! migrations, errors.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use iam::{IamError, KeyAlgorithm, KeyServerUrl, KeyStatus, SCHEMA_VERSION, Store};
use testkit::TestStore;

const NOW: u64 = 1_750_000_000;

fn temp_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    (dir, path)
}

fn accounts_are_created_listed_and_unique(ts: TestStore) {
    let path = ts.location();
    let mut store = Store::open(path).unwrap();
    assert!(store.accounts().unwrap().is_empty());
    let b = store
        .create_account("bookstore-client", "my-project", NOW)
        .unwrap();
    let a = store
        .create_account("another-client", "my-project", NOW + 1)
        .unwrap();
    assert_eq!(
        b.email,
        "bookstore-client@my-project.iam.gserviceaccount.com"
    );
    assert_eq!(b.account_id, "bookstore-client");
    assert_eq!(b.project_id, "my-project");
    assert_eq!(b.created, NOW);
    assert_eq!(b.unique_id.len(), 21);
    assert_ne!(a.unique_id, b.unique_id);
    // Sorted by email.
    assert_eq!(store.accounts().unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.account(&b.email).unwrap(), b);

    let dup = store.create_account("bookstore-client", "my-project", NOW);
    assert!(
        matches!(&dup, Err(IamError::AccountExists(email)) if *email == b.email),
        "{dup:?}"
    );
    assert_eq!(
        dup.unwrap_err().to_string(),
        "service account bookstore-client@my-project.iam.gserviceaccount.com already exists"
    );
    // The same name in another project is another account.
    store
        .create_account("bookstore-client", "other-project", NOW)
        .unwrap();
    assert_eq!(store.accounts().unwrap().len(), 3);

    assert!(matches!(
        store.create_account("Bad_Name", "my-project", NOW),
        Err(IamError::InvalidAccountId { .. })
    ));
    assert!(matches!(
        store.create_account("good-name", "p", NOW),
        Err(IamError::InvalidProjectId { .. })
    ));
    let unknown = store.account("nobody-here@my-project.iam.gserviceaccount.com");
    assert!(matches!(unknown, Err(IamError::UnknownAccount(_))));
}

fn keys_are_created_disabled_enabled_and_deleted(ts: TestStore) {
    let (dir, path) = (ts.dir(), ts.location());
    let mut store = Store::open(path).unwrap();
    let email = store
        .create_account("signer-one", "my-project", NOW)
        .unwrap()
        .email;
    let base = KeyServerUrl::default();
    let out1 = dir.join("k1.json");
    let out2 = dir.join("k2.json");
    let k1 = store
        .create_key(&email, KeyAlgorithm::Rs256, &base, &out1, NOW)
        .unwrap();
    let k2 = store
        .create_key(&email, KeyAlgorithm::Es256, &base, &out2, NOW + 5)
        .unwrap();
    assert_eq!(store.keys(&email).unwrap(), vec![k1.clone(), k2.clone()]);
    assert_eq!(k1.state, KeyStatus::Enabled);

    // The file holds the private key; the store does not.
    let file =
        jose::ServiceAccountKey::from_json(&std::fs::read_to_string(&out1).unwrap()).unwrap();
    assert_eq!(file.private_key_id, k1.key_id);
    if let Some(file) = ts.sqlite_path() {
        let db = std::fs::read(file).unwrap();
        let needle = b"PRIVATE KEY";
        assert!(!db.windows(needle.len()).any(|w| w == needle));
    }
    let rows = ts.query_raw("SELECT public_key_pem || certificate_pem FROM keys");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|row| !row.contains("PRIVATE KEY")),
        "{rows:?}"
    );

    store
        .set_key_state(&email, &k1.key_id, KeyStatus::Disabled)
        .unwrap();
    store
        .set_key_state(&email, &k1.key_id, KeyStatus::Disabled)
        .unwrap(); // idempotent
    assert_eq!(store.keys(&email).unwrap()[0].state, KeyStatus::Disabled);
    assert_eq!(store.published_keys(&email).unwrap(), vec![k2.clone()]);
    store
        .set_key_state(&email, &k1.key_id, KeyStatus::Enabled)
        .unwrap();
    assert_eq!(store.published_keys(&email).unwrap().len(), 2);

    store.delete_key(&email, &k2.key_id).unwrap();
    assert_eq!(store.keys(&email).unwrap(), vec![k1.clone()]);
    let again = store.delete_key(&email, &k2.key_id);
    assert!(
        matches!(&again, Err(IamError::UnknownKey { key_id, .. }) if *key_id == k2.key_id),
        "{again:?}"
    );
    assert!(matches!(
        store.set_key_state(&email, "0000", KeyStatus::Disabled),
        Err(IamError::UnknownKey { .. })
    ));
    // A key id of another account is unknown for this one.
    let other = store
        .create_account("signer-two", "my-project", NOW)
        .unwrap()
        .email;
    assert!(matches!(
        store.delete_key(&other, &k1.key_id),
        Err(IamError::UnknownKey { .. })
    ));
    let nobody = "nobody-here@my-project.iam.gserviceaccount.com";
    assert!(matches!(
        store.keys(nobody),
        Err(IamError::UnknownAccount(_))
    ));
    assert!(matches!(
        store.delete_key(nobody, &k1.key_id),
        Err(IamError::UnknownAccount(_))
    ));
    assert!(matches!(
        store.create_key(nobody, KeyAlgorithm::Rs256, &base, &dir.join("n.json"), NOW),
        Err(IamError::UnknownAccount(_))
    ));
    assert!(!dir.join("n.json").exists());
}

fn create_key_fails_before_recording_when_out_is_unusable(ts: TestStore) {
    let (dir, path) = (ts.dir(), ts.location());
    let mut store = Store::open(path).unwrap();
    let email = store
        .create_account("signer-one", "my-project", NOW)
        .unwrap()
        .email;
    let base = KeyServerUrl::default();
    let existing = dir.join("exists.json");
    std::fs::write(&existing, "keep me").unwrap();
    let err = store
        .create_key(&email, KeyAlgorithm::Rs256, &base, &existing, NOW)
        .unwrap_err();
    assert!(matches!(err, IamError::KeyFileExists(_)), "{err:?}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let err = store
        .create_key(
            &email,
            KeyAlgorithm::Rs256,
            &base,
            &dir.join("no/such/dir.json"),
            NOW,
        )
        .unwrap_err();
    assert!(matches!(err, IamError::KeyFileWrite { .. }), "{err:?}");
    assert!(store.keys(&email).unwrap().is_empty());
}

fn data_survives_reopening_and_is_seen_by_a_second_connection(ts: TestStore) {
    let (dir, path) = (ts.dir(), ts.location());
    let mut writer = Store::open(path).unwrap();
    let reader = Store::open(path).unwrap();
    let email = writer
        .create_account("signer-one", "my-project", NOW)
        .unwrap()
        .email;
    assert_eq!(reader.accounts().unwrap().len(), 1);
    let key = writer
        .create_key(
            &email,
            KeyAlgorithm::Es256,
            &KeyServerUrl::default(),
            &dir.join("k.json"),
            NOW,
        )
        .unwrap();
    assert_eq!(reader.published_keys(&email).unwrap(), vec![key.clone()]);
    writer
        .set_key_state(&email, &key.key_id, KeyStatus::Disabled)
        .unwrap();
    assert!(reader.published_keys(&email).unwrap().is_empty());
    drop((writer, reader));
    let reopened = Store::open(path).unwrap();
    assert_eq!(reopened.keys(&email).unwrap()[0].state, KeyStatus::Disabled);
}

fn migrations_set_the_version_and_refuse_newer_stores(ts: TestStore) {
    let path = ts.location();
    // A store with a table of someone else's (version 0) is migrated.
    ts.execute_raw("CREATE TABLE unrelated (x INTEGER)");
    let store = Store::open(path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 5);
    drop(store);
    // Opening again runs nothing and keeps the version.
    let (store, migration) = Store::open_migrated(path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        (migration.from, migration.to),
        (SCHEMA_VERSION, SCHEMA_VERSION)
    );
    drop(store);

    // A store from a newer esprit is refused rather than misread, naming both versions.
    ts.set_schema_version(SCHEMA_VERSION + 1);
    let err = Store::open(path).unwrap_err();
    assert!(
        matches!(err, IamError::StoreTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the IAM store has schema version {}, newer than this esprit supports ({})",
            SCHEMA_VERSION + 1,
            SCHEMA_VERSION
        )
    );
    // So are the key server's pool and the copy.
    assert!(matches!(
        iam::StorePool::open(path, iam::PoolSettings::default()),
        Err(IamError::StoreTooNew { .. })
    ));
}

/// A file from a newer esprit (only `user_version` set) is refused before anything is written.
#[test]
fn a_new_sqlite_file_of_a_newer_version_is_refused() {
    let (_dir, newer) = temp_store();
    set_user_version(&newer, SCHEMA_VERSION + 1);
    let err = Store::open(&newer).unwrap_err();
    assert!(
        matches!(err, IamError::StoreTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_an_open_error() {
    let (_dir, path) = temp_store();
    std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
    let err = Store::open(path).unwrap_err();
    assert!(
        matches!(err, IamError::StoreOpen { .. } | IamError::Store(_)),
        "{err:?}"
    );
}

/// A SQLite file with only `user_version` set, as a newer esprit might leave it.
fn set_user_version(path: &std::path::Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", version).unwrap();
}

testkit::store_tests!(
    accounts_are_created_listed_and_unique,
    keys_are_created_disabled_enabled_and_deleted,
    create_key_fails_before_recording_when_out_is_unusable,
    data_survives_reopening_and_is_seen_by_a_second_connection,
    migrations_set_the_version_and_refuse_newer_stores,
);
