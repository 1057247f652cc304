//! The store of accounts, public keys and API-key hashes, shared by the CLI and the key server:
//! a SQLite file (the default) or a PostgreSQL database (`--store postgres://…`).
//!
//! Several processes use one store at once (`esprit iam keys create` while `esprit iam serve`
//! runs, or several key servers on one PostgreSQL database). A SQLite file is in WAL mode
//! (readers never block the writer) with a busy timeout. Every write where a read decides what
//! to write runs in one write transaction ([`Store::write`]): SQLite's `BEGIN IMMEDIATE`, and in
//! PostgreSQL a transaction that first takes one advisory lock, so writers take turns on both
//! and such a read sees every earlier write. The schema and its migrations are in [`schema`].

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
mod schema;
mod service_roles;
mod value;

use std::cell::Cell;
use std::path::Path;

pub use copy::{CopyReport, copy_store};
pub use db::StoreLocation;
pub use files::{LooseFile, loose_files};
pub(crate) use managed_keys::{KeyOwner, ManagedKey};
pub use pool::{MAX_POOL_SIZE, PoolSettings, StorePool};
pub(crate) use schema::TABLES;
pub use schema::{Migration, SCHEMA_VERSION};

use db::{Access, Db, Row, Violation, args, violation};

use crate::ids::{account_email, new_client_id};
use crate::keyfile::{KeyFileSlot, new_key};
use crate::model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
use crate::{IamError, Result};

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
    /// inside `work` joins its transaction. A store a newer esprit has migrated meanwhile is
    /// refused before `work` runs ([`IamError::StoreTooNew`]).
    pub(crate) fn write<T>(&self, work: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.transaction(true, work)
    }

    /// [`Store::write`], checking the schema version first when `check_schema` (not while
    /// migrating: the version is what the migration reads and writes).
    fn transaction<T>(
        &self,
        check_schema: bool,
        work: impl FnOnce(&Store) -> Result<T>,
    ) -> Result<T> {
        if self.writing.get() {
            return work(self);
        }
        self.db.begin_write()?;
        self.writing.set(true);
        let mut guard = WriteGuard {
            store: self,
            done: false,
        };
        if check_schema {
            self.refuse_newer_schema()?;
        }
        let value = work(self)?;
        self.db.commit()?;
        guard.done = true;
        Ok(value)
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
