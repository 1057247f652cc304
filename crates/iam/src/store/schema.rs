//! The store's schema: the migrations (written once, in SQLite's DDL; [`db::postgres_ddl`]
//! makes PostgreSQL's from them), the schema version, and the check that refuses a store a
//! newer esprit has migrated.
//!
//! The version is `PRAGMA user_version` in SQLite and the one row of `esprit_iam_schema` in
//! PostgreSQL. The migrations run in order, in one write transaction, when a store is opened.
//! A process that keeps a store open (`esprit iam serve`) checks the version again at the start
//! of every write transaction ([`Store::write`]) and, in its pool, at most every
//! [`super::PoolSettings::schema_check`]: once a newer esprit has migrated the store, an older
//! one refuses it ([`IamError::StoreTooNew`]) instead of misreading or miswriting it.

use super::Store;
use super::db::{self, args};
use crate::{IamError, Result};

/// Migration `i` brings a store from schema version `i` to `i + 1`. Append only. Written in
/// SQLite's DDL; [`db::postgres_ddl`] makes PostgreSQL's from it.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and their public keys (no private key is ever stored).
    "CREATE TABLE accounts (
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
    CREATE INDEX keys_by_email ON keys(email);",
    // 2: API keys. Only the SHA-256 of a key is kept (UNIQUE, so lookups by hash use an index)
    // and its first 8 characters, to recognise it; the key itself is never stored.
    "CREATE TABLE api_keys (
        id       TEXT PRIMARY KEY,
        key_hash BLOB NOT NULL UNIQUE,
        prefix   TEXT NOT NULL,
        project  TEXT NOT NULL,
        name     TEXT,
        created  INTEGER NOT NULL,
        revoked  INTEGER
    ) STRICT;
    CREATE INDEX api_keys_by_project ON api_keys(project, created);",
    // 3: the token service. Server-managed keys (the token service's signing keys, and keys
    // the server holds for an account to sign JWTs with): the private key only sealed with the
    // key-encryption key (AES-256-GCM, bound to key id and owner), never in clear; the KEK's check
    // value (never the KEK); access tokens by SHA-256 (never the token).
    "CREATE TABLE managed_keys (
        key_id             TEXT PRIMARY KEY,
        owner              TEXT NOT NULL CHECK (owner IN ('token-service', 'account')),
        email              TEXT REFERENCES accounts(email) ON DELETE CASCADE,
        algorithm          TEXT NOT NULL,
        sealed_private_key BLOB NOT NULL,
        public_key_pem     TEXT NOT NULL,
        certificate_pem    TEXT NOT NULL,
        created            INTEGER NOT NULL,
        sign_from          INTEGER NOT NULL,
        sign_until         INTEGER NOT NULL,
        publish_until      INTEGER NOT NULL,
        CHECK ((owner = 'token-service') = (email IS NULL))
    ) STRICT;
    CREATE INDEX managed_keys_by_email ON managed_keys(email);
    CREATE TABLE kek_check (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        check_value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE access_tokens (
        token_hash BLOB PRIMARY KEY,
        email      TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        scopes     TEXT NOT NULL,
        expires    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX access_tokens_by_expiry ON access_tokens(expires);
    CREATE INDEX access_tokens_by_email ON access_tokens(email);",
    // 4: role bindings: `member` holds `role` on `resource`, both account emails (the member
    // is `serviceAccount:EMAIL`, the resource `projects/-/serviceAccounts/EMAIL`). Deleting an
    // account deletes its bindings, as member and as resource.
    "CREATE TABLE role_bindings (
        member   TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        role     TEXT NOT NULL,
        resource TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        created  INTEGER NOT NULL,
        PRIMARY KEY (member, role, resource)
    ) STRICT;
    CREATE INDEX role_bindings_by_resource ON role_bindings(resource, role);",
    // 5: role bindings on services (`services/SERVICE`, the service name of a service config):
    // `roles/servicemanagement.serviceController` lets the member's key server calls check API
    // keys for that service. The service is not an account, so it has no foreign key; deleting
    // the member deletes its bindings.
    "CREATE TABLE service_role_bindings (
        member  TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
        role    TEXT NOT NULL,
        service TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (member, role, service)
    ) STRICT;
    CREATE INDEX service_role_bindings_by_service ON service_role_bindings(service, role);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The tables of the store, each after the tables it refers to: what `iam store copy` copies
/// (every column, in insertion order). A table added by a migration is added here.
pub(crate) const TABLES: &[&str] = &[
    "accounts",
    "keys",
    "api_keys",
    "managed_keys",
    "kek_check",
    "access_tokens",
    "role_bindings",
    "service_role_bindings",
];

/// PostgreSQL's schema version table (SQLite keeps the version in `PRAGMA user_version`).
const PG_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS esprit_iam_schema (
        id      BIGINT PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
    );
    INSERT INTO esprit_iam_schema (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;";

/// What opening a store did to its schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The schema version found.
    pub from: i64,
    /// The schema version now ([`SCHEMA_VERSION`]).
    pub to: i64,
}

/// [`IamError::StoreTooNew`] when `found` is newer than [`SCHEMA_VERSION`].
fn known_version(found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(IamError::StoreTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

impl Store {
    pub(super) fn migrate(&self) -> Result<Migration> {
        // One write transaction: two processes opening a new store at once do not both
        // migrate it, and a PostgreSQL migration holds the write lock.
        self.transaction(false, |store| {
            if store.db.is_postgres() {
                store.db.batch(PG_VERSION_TABLE)?;
            }
            let found = store.schema_version()?;
            known_version(found)?;
            let start = usize::try_from(found).unwrap_or(0);
            for sql in MIGRATIONS.iter().skip(start) {
                if store.db.is_postgres() {
                    store.db.batch(&db::postgres_ddl(sql))?;
                } else {
                    store.db.batch(sql)?;
                }
            }
            if found != SCHEMA_VERSION {
                store.set_schema_version(SCHEMA_VERSION)?;
            }
            Ok(Migration {
                from: found,
                to: SCHEMA_VERSION,
            })
        })
    }

    fn set_schema_version(&self, version: i64) -> Result<()> {
        if self.db.is_postgres() {
            self.db.execute(
                "UPDATE esprit_iam_schema SET version = ?1 WHERE id = 1",
                args![version],
            )?;
        } else {
            self.db.batch(&format!("PRAGMA user_version = {version}"))?;
        }
        Ok(())
    }

    /// The store's schema version (0 for a new store).
    pub fn schema_version(&self) -> Result<i64> {
        if self.db.is_postgres() {
            let exists = self
                .db
                .query_one(
                    "SELECT to_regclass('esprit_iam_schema') IS NOT NULL",
                    args![],
                )?
                .bool(0)?;
            if !exists {
                return Ok(0);
            }
            Ok(self
                .db
                .query_opt(
                    "SELECT version FROM esprit_iam_schema WHERE id = 1",
                    args![],
                )?
                .map(|row| row.int(0))
                .transpose()?
                .unwrap_or(0))
        } else {
            self.db.query_one("PRAGMA user_version", args![])?.int(0)
        }
    }

    /// [`IamError::StoreTooNew`] when a newer esprit has migrated the store since this
    /// connection opened it (one query; the store must have been migrated once).
    pub(crate) fn refuse_newer_schema(&self) -> Result<()> {
        let found = if self.db.is_postgres() {
            self.db
                .query_one(
                    "SELECT version FROM esprit_iam_schema WHERE id = 1",
                    args![],
                )?
                .int(0)?
        } else {
            self.db.query_one("PRAGMA user_version", args![])?.int(0)?
        };
        known_version(found)
    }
}
