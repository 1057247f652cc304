//! Server-managed keys (sealed private keys), the KEK check value and access-token hashes.
//!
//! The functions take a `&Connection` so that they run inside the callers' immediate
//! transactions (a `Transaction` derefs to one) as well as on a plain connection.

use rusqlite::{Connection, OptionalExtension as _, Row, params};

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

fn managed_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ManagedKey>> {
    let key_id: String = row.get(0)?;
    let owner: String = row.get(1)?;
    let email: Option<String> = row.get(2)?;
    let algorithm: String = row.get(3)?;
    let owner = match (owner.as_str(), email) {
        ("token-service", None) => KeyOwner::TokenService,
        ("account", Some(email)) => KeyOwner::Account(email),
        _ => {
            return Ok(Err(IamError::StoreCorrupt(format!(
                "managed key {key_id} has owner {owner:?}"
            ))));
        }
    };
    let Ok(algorithm) = algorithm.parse::<KeyAlgorithm>() else {
        return Ok(Err(IamError::StoreCorrupt(format!(
            "managed key {key_id} has algorithm {algorithm:?}"
        ))));
    };
    Ok(Ok(ManagedKey {
        key_id,
        owner,
        algorithm,
        sealed_private_key: row.get(4)?,
        public_key_pem: row.get(5)?,
        certificate_pem: row.get(6)?,
        created: to_u64(row.get(7)?),
        window: KeyWindow {
            sign_from: to_u64(row.get(8)?),
            sign_until: to_u64(row.get(9)?),
            publish_until: to_u64(row.get(10)?),
        },
    }))
}

/// The keys of `owner`, oldest first.
pub(crate) fn managed_keys(conn: &Connection, owner: &KeyOwner) -> Result<Vec<ManagedKey>> {
    let (kind, email) = owner.column();
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM managed_keys WHERE owner = ?1 AND email IS ?2
         ORDER BY sign_from, created, rowid"
    ))?;
    let rows = stmt
        .query_map(params![kind, email], managed_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().collect()
}

/// Records `key`, first checking (or, in a store without managed keys, recording) the KEK's
/// check value: keys sealed with two KEKs never share a store.
pub(crate) fn insert_managed_key(conn: &Connection, key: &ManagedKey, kek: &Kek) -> Result<()> {
    check_kek(conn, kek)?;
    let count: i64 = conn.query_row("SELECT count(*) FROM managed_keys", [], |r| r.get(0))?;
    if count == 0 {
        conn.execute(
            "INSERT OR REPLACE INTO kek_check (id, check_value) VALUES (1, ?1)",
            [kek.check_value()],
        )?;
    }
    let (kind, email) = key.owner.column();
    conn.execute(
        &format!("INSERT INTO managed_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            key.key_id,
            kind,
            email,
            key.algorithm.name(),
            key.sealed_private_key,
            key.public_key_pem,
            key.certificate_pem,
            to_i64(key.created),
            to_i64(key.window.sign_from),
            to_i64(key.window.sign_until),
            to_i64(key.window.publish_until),
        ],
    )?;
    Ok(())
}

/// Gives key `key_id` a new window.
pub(crate) fn set_window(conn: &Connection, key_id: &str, window: &KeyWindow) -> Result<()> {
    conn.execute(
        "UPDATE managed_keys SET sign_from = ?2, sign_until = ?3, publish_until = ?4
         WHERE key_id = ?1",
        params![
            key_id,
            to_i64(window.sign_from),
            to_i64(window.sign_until),
            to_i64(window.publish_until)
        ],
    )?;
    Ok(())
}

/// Deletes key `key_id` (its sealed private key with it).
pub(crate) fn delete_managed_key(conn: &Connection, key_id: &str) -> Result<()> {
    conn.execute("DELETE FROM managed_keys WHERE key_id = ?1", [key_id])?;
    Ok(())
}

/// Fails with [`IamError::KekMismatch`] when the store holds managed keys sealed with another
/// KEK. A store without managed keys accepts any KEK.
pub(crate) fn check_kek(conn: &Connection, kek: &Kek) -> Result<()> {
    let count: i64 = conn.query_row("SELECT count(*) FROM managed_keys", [], |r| r.get(0))?;
    if count == 0 {
        return Ok(());
    }
    let recorded: Option<String> = conn
        .query_row("SELECT check_value FROM kek_check WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
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
    conn: &Connection,
    hash: &[u8],
    email: &str,
    scopes: &[String],
    expires: u64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO access_tokens (token_hash, email, scopes, expires) VALUES (?1, ?2, ?3, ?4)",
        params![hash, email, scopes.join(" "), to_i64(expires)],
    )?;
    Ok(())
}

/// Deletes up to `limit` expired access-token rows (opportunistic purge, bounded per call).
pub(crate) fn purge_access_tokens(conn: &Connection, now: u64, limit: u32) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM access_tokens WHERE rowid IN
           (SELECT rowid FROM access_tokens WHERE expires <= ?1 LIMIT ?2)",
        params![to_i64(now), limit],
    )?)
}

/// The (existing) account and scopes of the unexpired access token with this hash.
pub(crate) fn access_token_owner(
    conn: &Connection,
    hash: &[u8],
    now: u64,
) -> Result<Option<(Account, Vec<String>)>> {
    let found = conn
        .query_row(
            "SELECT a.email, a.account_id, a.project_id, a.unique_id, a.created, t.scopes
             FROM access_tokens t JOIN accounts a ON a.email = t.email
             WHERE t.token_hash = ?1 AND t.expires > ?2",
            params![hash, to_i64(now)],
            |row| {
                let account = account_from_row(row)?;
                let scopes: String = row.get(5)?;
                Ok((account, scopes))
            },
        )
        .optional()?;
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
    /// The connection, for the token service's transactions.
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The keys the key server publishes in `email`'s key documents: the enabled keys of the
    /// account's key files, then the keys the server holds for it (`signJwt`).
    pub fn served_keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        let mut keys = self.published_keys(email)?;
        keys.extend(
            managed_keys(&self.conn, &KeyOwner::Account(email.to_owned()))?
                .iter()
                .map(ManagedKey::public),
        );
        Ok(keys)
    }
}
