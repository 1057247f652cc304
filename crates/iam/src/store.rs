//! The SQLite store of accounts, public keys and API-key hashes, shared by the CLI and the key server.
//!
//! Several processes use one file at once (`esprit iam keys create` while `esprit iam serve`
//! runs), so the file is in WAL mode (readers never block the writer) with a busy timeout, and
//! every write is one short transaction. The schema version is `PRAGMA user_version`; the
//! migrations below run in order, in one immediate transaction, when a file is opened.

mod api_keys;
mod files;
pub(crate) mod managed_keys;
mod pool;
mod roles;
mod service_roles;

use std::path::Path;
use std::time::Duration;

pub use files::{LooseFile, loose_files};
pub(crate) use managed_keys::{KeyOwner, ManagedKey};
pub use pool::{PoolSettings, StorePool};

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, Row, TransactionBehavior, params};

use crate::ids::{account_email, new_client_id};
use crate::keyfile::{KeyFileSlot, new_key};
use crate::model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
use crate::{IamError, Result};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` brings a file from schema version `i` to `i + 1`. Append only.
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

/// An open store: one SQLite connection. Not `Sync`: the key server keeps several in a
/// [`StorePool`].
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

fn is_primary_key_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if e.code == ErrorCode::ConstraintViolation
            && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        email: row.get(0)?,
        account_id: row.get(1)?,
        project_id: row.get(2)?,
        unique_id: row.get(3)?,
        created: to_u64(row.get(4)?),
    })
}

/// A key row before its algorithm name is checked.
type KeyRow = (String, String, String, String, String, i64, bool);

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn stored_key(row: KeyRow) -> Result<StoredKey> {
    let (key_id, email, algorithm, public_key_pem, certificate_pem, created, disabled) = row;
    let algorithm = algorithm
        .parse::<KeyAlgorithm>()
        .map_err(|_| IamError::StoreCorrupt(format!("key {key_id} has algorithm {algorithm:?}")))?;
    Ok(StoredKey {
        key_id,
        email,
        algorithm,
        public_key_pem,
        certificate_pem,
        created: to_u64(created),
        state: if disabled {
            KeyStatus::Disabled
        } else {
            KeyStatus::Enabled
        },
    })
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    ///
    /// A new store file is created mode 0600 (SQLite gives its `-wal` and `-shm` files the
    /// same mode). An existing store, `-wal` or `-shm` file that is group- or world-writable is
    /// logged as a warning on every open ([`loose_files`] lists them; it is not refused).
    pub fn open(path: &Path) -> Result<Store> {
        files::create_private(path).map_err(|source| IamError::StoreCreate {
            path: path.to_owned(),
            source,
        })?;
        let conn = connect(path, Access::ReadWrite)?;
        let mut store = Store { conn };
        store.migrate()?;
        for loose in loose_files(path) {
            tracing::warn!(path = %loose.path.display(), mode = %format_args!("{:04o}", loose.mode), "{loose}");
        }
        Ok(store)
    }

    /// A connection that only reads (`PRAGMA query_only`), for lookups; the schema must be
    /// up to date already (open the store with [`Store::open`] first).
    fn open_reader(path: &Path) -> Result<Store> {
        Ok(Store {
            conn: connect(path, Access::ReadOnly)?,
        })
    }

    fn migrate(&mut self) -> Result<()> {
        // Immediate: two processes opening a new file at once must not both migrate it.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(IamError::StoreTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let start = usize::try_from(found).unwrap_or(0);
        for sql in MIGRATIONS.iter().skip(start) {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(())
    }

    /// The file's schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
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
        let inserted = self.conn.execute(
            "INSERT INTO accounts (email, account_id, project_id, unique_id, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                account.email,
                account.account_id,
                account.project_id,
                account.unique_id,
                to_i64(now)
            ],
        );
        match inserted {
            Ok(_) => Ok(account),
            Err(err) if is_primary_key_violation(&err) => {
                Err(IamError::AccountExists(account.email))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Every account, by email.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, account_id, project_id, unique_id, created FROM accounts ORDER BY email",
        )?;
        let rows = stmt.query_map([], account_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The account `email`, or [`IamError::UnknownAccount`].
    pub fn account(&self, email: &str) -> Result<Account> {
        self.conn
            .query_row(
                "SELECT email, account_id, project_id, unique_id, created FROM accounts
                 WHERE email = ?1",
                [email],
                account_from_row,
            )
            .optional()?
            .ok_or_else(|| IamError::UnknownAccount(email.to_owned()))
    }

    /// Deletes the account `email` with everything that is its: key-file keys, server-managed
    /// keys and access tokens (`ON DELETE CASCADE`). Tokens issued to it are refused from then on.
    pub fn delete_account(&mut self, email: &str) -> Result<()> {
        let changed = self
            .conn
            .execute("DELETE FROM accounts WHERE email = ?1", [email])?;
        if changed == 0 {
            return Err(IamError::UnknownAccount(email.to_owned()));
        }
        Ok(())
    }

    /// Records a key's public part. The account must exist.
    pub fn add_key(&mut self, key: &StoredKey) -> Result<()> {
        self.account(&key.email)?;
        self.conn.execute(
            "INSERT INTO keys (key_id, email, algorithm, public_key_pem, certificate_pem, created,
                               disabled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                key.key_id,
                key.email,
                key.algorithm.name(),
                key.public_key_pem,
                key.certificate_pem,
                to_i64(key.created),
                key.state == KeyStatus::Disabled
            ],
        )?;
        Ok(())
    }

    /// Every key of `email` (enabled and disabled), oldest first (in creation order).
    pub fn keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        self.account(email)?;
        let mut stmt = self.conn.prepare(
            "SELECT key_id, email, algorithm, public_key_pem, certificate_pem, created, disabled
             FROM keys WHERE email = ?1 ORDER BY created, rowid",
        )?;
        let rows = stmt
            .query_map([email], key_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(stored_key).collect()
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
        let changed = self.conn.execute(
            "UPDATE keys SET disabled = ?3 WHERE email = ?1 AND key_id = ?2",
            params![email, key_id, state == KeyStatus::Disabled],
        )?;
        if changed == 0 {
            return Err(unknown_key(email, key_id));
        }
        Ok(())
    }

    /// Deletes a key for good: its public key is gone from the store and the key server.
    pub fn delete_key(&mut self, email: &str, key_id: &str) -> Result<()> {
        self.account(email)?;
        let changed = self.conn.execute(
            "DELETE FROM keys WHERE email = ?1 AND key_id = ?2",
            params![email, key_id],
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

fn connect(path: &Path, access: Access) -> Result<Connection> {
    let opened = || -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with the mode in force; WAL persists in the file.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if access == Access::ReadOnly {
            conn.pragma_update(None, "query_only", true)?;
        }
        Ok(conn)
    };
    opened().map_err(|source| IamError::StoreOpen {
        path: path.to_owned(),
        source,
    })
}

fn unknown_key(email: &str, key_id: &str) -> IamError {
    IamError::UnknownKey {
        email: email.to_owned(),
        key_id: key_id.to_owned(),
    }
}
