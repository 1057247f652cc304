//! The store of accounts, public keys and API-key hashes, shared by the CLI and the key server:
//! a SQLite file (the default) or a PostgreSQL database (`--store postgres://…`).
//!
//! Several processes use one store at once (`esprit iam keys create` while `esprit iam serve`
//! runs, or several key servers on one PostgreSQL database). A SQLite file is in WAL mode
//! (readers never block the writer) with a busy timeout. Every write where a read decides what
//! to write runs in one write transaction ([`Store::write`]): SQLite's `BEGIN IMMEDIATE`, and in
//! PostgreSQL a transaction that first takes one advisory lock, so writers take turns on both
//! and such a read sees every earlier write. The schema version is `PRAGMA user_version` in
//! SQLite and the one row of `esprit_iam_schema` in PostgreSQL; the migrations below (written
//! once, see [`db`]) run in order, in one write transaction, when a store is opened.

mod api_keys;
mod copy;
pub(crate) mod db;
mod files;
mod location;
pub(crate) mod managed_keys;
mod pg_conn;
mod pg_tls;
mod pool;
mod roles;
mod service_roles;

use std::cell::Cell;
use std::path::Path;

pub use copy::{CopyReport, copy_store};
pub use db::StoreLocation;
pub use files::{LooseFile, loose_files};
pub(crate) use managed_keys::{KeyOwner, ManagedKey};
pub use pool::{MAX_POOL_SIZE, PoolSettings, StorePool};

use db::{Access, Db, Row, Violation, args, violation};

use crate::ids::{account_email, new_client_id};
use crate::keyfile::{KeyFileSlot, new_key};
use crate::model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
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

/// An open store: one connection (SQLite or PostgreSQL). Not `Sync`: the key server keeps
/// several in a [`StorePool`].
#[derive(Debug)]
pub struct Store {
    db: Db,
    location: StoreLocation,
    /// Inside [`Store::write`] (a nested call joins the open transaction).
    writing: Cell<bool>,
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const ACCOUNT_COLUMNS: &str = "email, account_id, project_id, unique_id, created";

fn account_from_row(row: &Row) -> Result<Account> {
    Ok(Account {
        email: row.text(0)?,
        account_id: row.text(1)?,
        project_id: row.text(2)?,
        unique_id: row.text(3)?,
        created: to_u64(row.int(4)?),
    })
}

fn stored_key(row: &Row) -> Result<StoredKey> {
    let key_id = row.text(0)?;
    let algorithm = row.text(2)?;
    let algorithm = algorithm
        .parse::<KeyAlgorithm>()
        .map_err(|_| IamError::StoreCorrupt(format!("key {key_id} has algorithm {algorithm:?}")))?;
    Ok(StoredKey {
        email: row.text(1)?,
        algorithm,
        public_key_pem: row.text(3)?,
        certificate_pem: row.text(4)?,
        created: to_u64(row.int(5)?),
        state: if row.bool(6)? {
            KeyStatus::Disabled
        } else {
            KeyStatus::Enabled
        },
        key_id,
    })
}

/// Rolls back a write transaction that did not commit (an error or a panic in it).
struct WriteGuard<'a> {
    store: &'a Store,
    done: bool,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.store.db.rollback();
        }
        self.store.writing.set(false);
    }
}

impl Store {
    /// Opens (creating if needed) the store at `location` and brings its schema up to date.
    ///
    /// A new SQLite file is created mode 0600 (SQLite gives its `-wal` and `-shm` files the
    /// same mode). An existing store, `-wal` or `-shm` file that is group- or world-writable is
    /// logged as a warning on every open ([`loose_files`] lists them; it is not refused).
    /// A PostgreSQL database must exist; its tables are created in the connection's schema.
    pub fn open(location: impl Into<StoreLocation>) -> Result<Store> {
        Store::open_migrated(location).map(|(store, _)| store)
    }

    /// [`Store::open`], also telling which schema version it found (`esprit iam migrate`).
    pub fn open_migrated(location: impl Into<StoreLocation>) -> Result<(Store, Migration)> {
        let location = location.into();
        if let StoreLocation::Sqlite(path) = &location {
            files::create_private(path).map_err(|source| IamError::StoreCreate {
                path: path.to_owned(),
                source,
            })?;
        }
        let store = Store::connect(&location, Access::ReadWrite)?;
        let migration = store.migrate()?;
        if let StoreLocation::Sqlite(path) = &location {
            for loose in loose_files(path) {
                tracing::warn!(path = %loose.path.display(), mode = %format_args!("{:04o}", loose.mode), "{loose}");
            }
        }
        Ok((store, migration))
    }

    /// A read-only connection to an existing store, its schema left as it is (`iam store copy`
    /// reads its source so).
    pub(crate) fn open_unmigrated(location: &StoreLocation) -> Result<Store> {
        if let StoreLocation::Sqlite(path) = location
            && !path.exists()
        {
            return Err(IamError::StoreMissing(path.clone()));
        }
        Store::connect(location, Access::ReadOnly)
    }

    fn connect(location: &StoreLocation, access: Access) -> Result<Store> {
        Ok(Store {
            db: Db::connect(location, access)?,
            location: location.clone(),
            writing: Cell::new(false),
        })
    }

    /// A connection that only reads, for lookups; the schema must be up to date already
    /// (open the store with [`Store::open`] first).
    fn open_reader(location: &StoreLocation) -> Result<Store> {
        Store::connect(location, Access::ReadOnly)
    }

    /// Where the store is.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Runs `work` in one write transaction, committed when it returns `Ok` and rolled back
    /// otherwise. Writers take turns (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the advisory
    /// lock [`db::WRITE_LOCK`]), so what `work` reads stays true until it commits. A call
    /// inside `work` joins its transaction.
    pub(crate) fn write<T>(&self, work: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if self.writing.get() {
            return work(self);
        }
        self.db.begin_write()?;
        self.writing.set(true);
        let mut guard = WriteGuard {
            store: self,
            done: false,
        };
        let value = work(self)?;
        self.db.commit()?;
        guard.done = true;
        Ok(value)
    }

    fn migrate(&self) -> Result<Migration> {
        // One write transaction: two processes opening a new store at once do not both
        // migrate it, and a PostgreSQL migration holds the write lock.
        self.write(|store| {
            if store.db.is_postgres() {
                store.db.batch(PG_VERSION_TABLE)?;
            }
            let found = store.schema_version()?;
            if found > SCHEMA_VERSION {
                return Err(IamError::StoreTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
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

    /// Creates `ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com` with a new 21-digit unique id.
    pub fn create_account(
        &mut self,
        account_id: &str,
        project_id: &str,
        now: u64,
    ) -> Result<Account> {
        let account = Account {
            email: account_email(account_id, project_id)?,
            account_id: account_id.to_owned(),
            project_id: project_id.to_owned(),
            unique_id: new_client_id()?,
            created: now,
        };
        let inserted = self.db.execute(
            "INSERT INTO accounts (email, account_id, project_id, unique_id, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![
                &account.email,
                &account.account_id,
                &account.project_id,
                &account.unique_id,
                to_i64(now)
            ],
        );
        match inserted {
            Ok(_) => Ok(account),
            Err(err) if violation(&err) == Some(Violation::Unique) => {
                // A clash of 21-digit unique ids would be refused the same way (never seen).
                Err(IamError::AccountExists(account.email))
            }
            Err(err) => Err(err),
        }
    }

    /// Every account, by email.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.db
            .query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY email"),
                args![],
            )?
            .iter()
            .map(account_from_row)
            .collect()
    }

    /// The account `email`, or [`IamError::UnknownAccount`].
    pub fn account(&self, email: &str) -> Result<Account> {
        self.db
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1"),
                args![email],
            )?
            .map(|row| account_from_row(&row))
            .transpose()?
            .ok_or_else(|| IamError::UnknownAccount(email.to_owned()))
    }

    /// Deletes the account `email` with everything that is its: key-file keys, server-managed
    /// keys and access tokens (`ON DELETE CASCADE`). Tokens issued to it are refused from then on.
    pub fn delete_account(&mut self, email: &str) -> Result<()> {
        let changed = self
            .db
            .execute("DELETE FROM accounts WHERE email = ?1", args![email])?;
        if changed == 0 {
            return Err(IamError::UnknownAccount(email.to_owned()));
        }
        Ok(())
    }

    /// Records a key's public part. The account must exist.
    pub fn add_key(&mut self, key: &StoredKey) -> Result<()> {
        self.account(&key.email)?;
        let inserted = self.db.execute(
            "INSERT INTO keys (key_id, email, algorithm, public_key_pem, certificate_pem, created,
                               disabled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                &key.key_id,
                &key.email,
                key.algorithm.name(),
                &key.public_key_pem,
                &key.certificate_pem,
                to_i64(key.created),
                key.state == KeyStatus::Disabled
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            // Deleted by another process since it was looked up.
            Err(err) if violation(&err) == Some(Violation::ForeignKey) => {
                Err(IamError::UnknownAccount(key.email.clone()))
            }
            Err(err) => Err(err),
        }
    }

    /// Every key of `email` (enabled and disabled), oldest first (in creation order).
    pub fn keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        self.account(email)?;
        self.db
            .query(
                "SELECT key_id, email, algorithm, public_key_pem, certificate_pem, created, disabled
                 FROM keys WHERE email = ?1 ORDER BY created, rowid",
                args![email],
            )?
            .iter()
            .map(stored_key)
            .collect()
    }

    /// The keys the key server publishes for `email`: the enabled ones.
    pub fn published_keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        let mut keys = self.keys(email)?;
        keys.retain(|k| k.state == KeyStatus::Enabled);
        Ok(keys)
    }

    /// Enables or disables a key (idempotent).
    pub fn set_key_state(&mut self, email: &str, key_id: &str, state: KeyStatus) -> Result<()> {
        self.account(email)?;
        let changed = self.db.execute(
            "UPDATE keys SET disabled = ?3 WHERE email = ?1 AND key_id = ?2",
            args![email, key_id, state == KeyStatus::Disabled],
        )?;
        if changed == 0 {
            return Err(unknown_key(email, key_id));
        }
        Ok(())
    }

    /// Deletes a key for good: its public key is gone from the store and the key server.
    pub fn delete_key(&mut self, email: &str, key_id: &str) -> Result<()> {
        self.account(email)?;
        let changed = self.db.execute(
            "DELETE FROM keys WHERE email = ?1 AND key_id = ?2",
            args![email, key_id],
        )?;
        if changed == 0 {
            return Err(unknown_key(email, key_id));
        }
        Ok(())
    }

    /// `esprit iam keys create`: makes a key for `email`, records its public part and writes
    /// the key file (private key included) to `out`, mode 0600, never over an existing file.
    /// The private key is written only to `out`. Fails before changing anything when `out`
    /// cannot be created; if the key cannot be recorded the empty file is removed, and if the
    /// file cannot be written the recorded key is deleted again.
    pub fn create_key(
        &mut self,
        email: &str,
        algorithm: KeyAlgorithm,
        key_server: &KeyServerUrl,
        out: &Path,
        now: u64,
    ) -> Result<StoredKey> {
        self.create_key_with_token_uri(email, algorithm, key_server, None, out, now)
    }

    /// [`Store::create_key`] writing `token_uri` (when given) into the key file's `token_uri`,
    /// e.g. the token endpoint of `esprit iam serve --issuer-url`, so that Google's client
    /// libraries ask it for tokens. Without it the file names Google's endpoint.
    pub fn create_key_with_token_uri(
        &mut self,
        email: &str,
        algorithm: KeyAlgorithm,
        key_server: &KeyServerUrl,
        token_uri: Option<&str>,
        out: &Path,
        now: u64,
    ) -> Result<StoredKey> {
        if let Some(uri) = token_uri {
            crate::token::service::parse_issuer_url(uri)
                .map_err(|_| IamError::InvalidTokenUri(uri.to_owned()))?;
        }
        let account = self.account(email)?;
        let slot = KeyFileSlot::create(out)?;
        let made = new_key(&account, algorithm, key_server, now).map(|mut new| {
            if let Some(uri) = token_uri {
                new.key_file.token_uri = uri.to_owned();
            }
            new
        });
        let new = match made {
            Ok(new) => new,
            Err(err) => {
                slot.abandon();
                return Err(err);
            }
        };
        if let Err(err) = self.add_key(&new.stored) {
            slot.abandon();
            return Err(err);
        }
        if let Err(err) = slot.write(&new.key_file) {
            let _ = self.delete_key(email, &new.stored.key_id);
            let _ = std::fs::remove_file(out);
            return Err(err);
        }
        Ok(new.stored)
    }
}

fn unknown_key(email: &str, key_id: &str) -> IamError {
    IamError::UnknownKey {
        email: email.to_owned(),
        key_id: key_id.to_owned(),
    }
}
