//! Server-managed keys (sealed private keys), the KEK check value and access-token hashes.
//!
//! The functions take a `&Store` so that they run inside the callers' write transactions
//! ([`Store::write`]) as well as on their own.

use super::db::{Row, args};
use super::{Store, account_from_row, to_i64, to_u64};
use crate::kek::Kek;
use crate::model::{Account, KeyAlgorithm, KeyStatus, StoredKey};
use crate::token::rotation::KeyWindow;
use crate::{IamError, Result};

/// Whose a server-managed key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyOwner {
    /// A signing key of the token service.
    TokenService,
    /// A key the server holds for this account (`signJwt`).
    Account(String),
}

impl KeyOwner {
    fn column(&self) -> (&'static str, Option<&str>) {
        match self {
            KeyOwner::TokenService => ("token-service", None),
            KeyOwner::Account(email) => ("account", Some(email)),
        }
    }

    /// The additional authenticated data of this owner's key `key_id`: a sealed key opens only
    /// on its own row.
    pub(crate) fn aad(&self, key_id: &str) -> Vec<u8> {
        let owner = match self {
            KeyOwner::TokenService => "token-service",
            KeyOwner::Account(email) => email,
        };
        format!("esprit-iam managed key v1\0{key_id}\0{owner}").into_bytes()
    }
}

/// A server-managed key row. The private key is sealed; [`Kek::open`] with
/// [`KeyOwner::aad`] yields its PKCS#8 PEM.
#[derive(Clone, Debug)]
pub(crate) struct ManagedKey {
    pub key_id: String,
    pub owner: KeyOwner,
    pub algorithm: KeyAlgorithm,
    pub sealed_private_key: Vec<u8>,
    pub public_key_pem: String,
    pub certificate_pem: String,
    pub created: u64,
    pub window: KeyWindow,
}

impl ManagedKey {
    /// The public part as the key documents render it (`email` = the owner's email, or the
    /// empty string for the token service).
    pub(crate) fn public(&self) -> StoredKey {
        StoredKey {
            key_id: self.key_id.clone(),
            email: match &self.owner {
                KeyOwner::TokenService => String::new(),
                KeyOwner::Account(email) => email.clone(),
            },
            algorithm: self.algorithm,
            public_key_pem: self.public_key_pem.clone(),
            certificate_pem: self.certificate_pem.clone(),
            created: self.created,
            state: KeyStatus::Enabled,
        }
    }
}

const COLUMNS: &str = "key_id, owner, email, algorithm, sealed_private_key, public_key_pem, \
                       certificate_pem, created, sign_from, sign_until, publish_until";

fn managed_from_row(row: &Row) -> Result<ManagedKey> {
    let key_id = row.text(0)?;
    let owner = row.text(1)?;
    let email = row.opt_text(2)?;
    let algorithm = row.text(3)?;
    let owner = match (owner.as_str(), email) {
        ("token-service", None) => KeyOwner::TokenService,
        ("account", Some(email)) => KeyOwner::Account(email),
        _ => {
            return Err(IamError::StoreCorrupt(format!(
                "managed key {key_id} has owner {owner:?}"
            )));
        }
    };
    let Ok(algorithm) = algorithm.parse::<KeyAlgorithm>() else {
        return Err(IamError::StoreCorrupt(format!(
            "managed key {key_id} has algorithm {algorithm:?}"
        )));
    };
    Ok(ManagedKey {
        key_id,
        owner,
        algorithm,
        sealed_private_key: row.blob(4)?,
        public_key_pem: row.text(5)?,
        certificate_pem: row.text(6)?,
        created: to_u64(row.int(7)?),
        window: KeyWindow {
            sign_from: to_u64(row.int(8)?),
            sign_until: to_u64(row.int(9)?),
            publish_until: to_u64(row.int(10)?),
        },
    })
}

/// The keys of `owner`, oldest first.
pub(crate) fn managed_keys(store: &Store, owner: &KeyOwner) -> Result<Vec<ManagedKey>> {
    let rows = match owner.column() {
        (kind, None) => store.db.query(
            &format!(
                "SELECT {COLUMNS} FROM managed_keys WHERE owner = ?1 AND email IS NULL
                 ORDER BY sign_from, created, rowid"
            ),
            args![kind],
        )?,
        (kind, Some(email)) => store.db.query(
            &format!(
                "SELECT {COLUMNS} FROM managed_keys WHERE owner = ?1 AND email = ?2
                 ORDER BY sign_from, created, rowid"
            ),
            args![kind, email],
        )?,
    };
    rows.iter().map(managed_from_row).collect()
}

/// Records `key`, first checking (or, in a store without managed keys, recording) the KEK's
/// check value: keys sealed with two KEKs never share a store.
pub(crate) fn insert_managed_key(store: &Store, key: &ManagedKey, kek: &Kek) -> Result<()> {
    store.write(|tx| {
        check_kek(tx, kek)?;
        if managed_key_count(tx)? == 0 {
            tx.db.execute(
                "INSERT INTO kek_check (id, check_value) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET check_value = excluded.check_value",
                args![kek.check_value()],
            )?;
        }
        insert_managed_key_row(tx, key)
    })
}

fn managed_key_count(store: &Store) -> Result<i64> {
    store
        .db
        .query_one("SELECT count(*) FROM managed_keys", args![])?
        .int(0)
}

fn insert_managed_key_row(store: &Store, key: &ManagedKey) -> Result<()> {
    let (kind, email) = key.owner.column();
    store.db.execute(
        &format!("INSERT INTO managed_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        args![
            &key.key_id,
            kind,
            email,
            key.algorithm.name(),
            &key.sealed_private_key,
            &key.public_key_pem,
            &key.certificate_pem,
            to_i64(key.created),
            to_i64(key.window.sign_from),
            to_i64(key.window.sign_until),
            to_i64(key.window.publish_until),
        ],
    )?;
    Ok(())
}

/// Gives key `key_id` a new window.
pub(crate) fn set_window(store: &Store, key_id: &str, window: &KeyWindow) -> Result<()> {
    store.db.execute(
        "UPDATE managed_keys SET sign_from = ?2, sign_until = ?3, publish_until = ?4
         WHERE key_id = ?1",
        args![
            key_id,
            to_i64(window.sign_from),
            to_i64(window.sign_until),
            to_i64(window.publish_until)
        ],
    )?;
    Ok(())
}

/// Deletes key `key_id` (its sealed private key with it).
pub(crate) fn delete_managed_key(store: &Store, key_id: &str) -> Result<()> {
    store
        .db
        .execute("DELETE FROM managed_keys WHERE key_id = ?1", args![key_id])?;
    Ok(())
}

/// Fails with [`IamError::KekMismatch`] when the store holds managed keys sealed with another
/// KEK. A store without managed keys accepts any KEK.
pub(crate) fn check_kek(store: &Store, kek: &Kek) -> Result<()> {
    if managed_key_count(store)? == 0 {
        return Ok(());
    }
    let recorded = store
        .db
        .query_opt("SELECT check_value FROM kek_check WHERE id = 1", args![])?
        .map(|row| row.text(0))
        .transpose()?;
    let given = kek.check_value();
    match recorded {
        Some(expected) if expected == given => Ok(()),
        Some(expected) => Err(IamError::KekMismatch { expected, given }),
        None => Err(IamError::StoreCorrupt(
            "server-managed keys without a key-encryption key check value".into(),
        )),
    }
}

/// Records an access token's hash.
pub(crate) fn insert_access_token(
    store: &Store,
    hash: &[u8],
    email: &str,
    scopes: &[String],
    expires: u64,
) -> Result<()> {
    store.db.execute(
        "INSERT INTO access_tokens (token_hash, email, scopes, expires) VALUES (?1, ?2, ?3, ?4)",
        args![hash, email, scopes.join(" "), to_i64(expires)],
    )?;
    Ok(())
}

/// Deletes up to `limit` expired access-token rows (opportunistic purge, bounded per call).
pub(crate) fn purge_access_tokens(store: &Store, now: u64, limit: u32) -> Result<u64> {
    store.db.execute(
        "DELETE FROM access_tokens WHERE token_hash IN
           (SELECT token_hash FROM access_tokens WHERE expires <= ?1 LIMIT ?2)",
        args![to_i64(now), i64::from(limit)],
    )
}

/// The (existing) account and scopes of the unexpired access token with this hash.
pub(crate) fn access_token_owner(
    store: &Store,
    hash: &[u8],
    now: u64,
) -> Result<Option<(Account, Vec<String>)>> {
    let found = match store.db.query_opt(
        "SELECT a.email, a.account_id, a.project_id, a.unique_id, a.created, t.scopes
         FROM access_tokens t JOIN accounts a ON a.email = t.email
         WHERE t.token_hash = ?1 AND t.expires > ?2",
        args![hash, to_i64(now)],
    )? {
        Some(row) => Some((account_from_row(&row)?, row.text(5)?)),
        None => None,
    };
    Ok(found.map(|(account, scopes)| {
        let scopes = scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (account, scopes)
    }))
}

impl Store {
    /// The keys the key server publishes in `email`'s key documents: the enabled keys of the
    /// account's key files, then the keys the server holds for it (`signJwt`).
    pub fn served_keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        let mut keys = self.published_keys(email)?;
        keys.extend(
            managed_keys(self, &KeyOwner::Account(email.to_owned()))?
                .iter()
                .map(ManagedKey::public),
        );
        Ok(keys)
    }
}
