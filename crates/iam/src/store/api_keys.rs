//! API keys in the store: create, list, revoke, and the check by hash.

use super::db::{Row, args};
use super::{Store, to_i64, to_u64};
use crate::api_keys::{
    ApiKey, ApiKeyCheck, Revocation, hash_api_key, key_prefix, looks_like_api_key, new_api_key,
    new_api_key_id, validate_api_key_name,
};
use crate::ids::validate_project_id;
use crate::{IamError, Result};

const COLUMNS: &str = "id, project, name, prefix, created, revoked";

fn api_key_from_row(row: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.text(0)?,
        project: row.text(1)?,
        name: row.opt_text(2)?,
        prefix: row.text(3)?,
        created: to_u64(row.int(4)?),
        revoked: row.opt_int(5)?.map(to_u64),
    })
}

impl Store {
    /// `esprit iam api-keys create`: makes a key for `project` (checked with Google's project-id
    /// rules) and records its hash. Returns the key, which is not kept anywhere and cannot be
    /// shown again, and what the store keeps about it.
    pub fn create_api_key(
        &mut self,
        project: &str,
        name: Option<&str>,
        now: u64,
    ) -> Result<(String, ApiKey)> {
        validate_project_id(project)?;
        if let Some(name) = name {
            validate_api_key_name(name)?;
        }
        let key = new_api_key()?;
        let record = ApiKey {
            id: new_api_key_id()?,
            project: project.to_owned(),
            name: name.map(str::to_owned),
            prefix: key_prefix(&key).to_owned(),
            created: now,
            revoked: None,
        };
        // A clash of 122-bit ids or 256-bit hashes would be a failed insert, not a wrong row.
        self.db.execute(
            "INSERT INTO api_keys (id, key_hash, prefix, project, name, created, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
            args![
                &record.id,
                hash_api_key(&key).as_slice(),
                &record.prefix,
                &record.project,
                record.name.as_deref(),
                to_i64(now)
            ],
        )?;
        Ok((key, record))
    }

    /// The API keys, of one project or of all, oldest first (revoked ones included).
    pub fn api_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows = match project {
            Some(project) => {
                validate_project_id(project)?;
                self.db.query(
                    &format!(
                        "SELECT {COLUMNS} FROM api_keys WHERE project = ?1 ORDER BY created, rowid"
                    ),
                    args![project],
                )?
            }
            None => self.db.query(
                &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created, rowid"),
                args![],
            )?,
        };
        rows.iter().map(api_key_from_row).collect()
    }

    /// The API key with id `id`, or [`IamError::UnknownApiKey`].
    pub fn api_key(&self, id: &str) -> Result<ApiKey> {
        self.db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
                args![id],
            )?
            .map(|row| api_key_from_row(&row))
            .transpose()?
            .ok_or_else(|| unknown_api_key(id))
    }

    /// Revokes the key with id `id` at `now`. Idempotent: revoking a revoked key succeeds with
    /// [`Revocation::AlreadyRevoked`] and keeps the first revocation time. A revoked key stays
    /// in the store (and in lists) so that checks can answer "revoked" rather than "unknown".
    pub fn revoke_api_key(&mut self, id: &str, now: u64) -> Result<Revocation> {
        self.write(|tx| {
            let revoked = tx
                .db
                .query_opt("SELECT revoked FROM api_keys WHERE id = ?1", args![id])?
                .map(|row| row.opt_int(0))
                .transpose()?;
            Ok(match revoked {
                None => return Err(unknown_api_key(id)),
                Some(Some(at)) => Revocation::AlreadyRevoked { at: to_u64(at) },
                Some(None) => {
                    tx.db.execute(
                        "UPDATE api_keys SET revoked = ?2 WHERE id = ?1",
                        args![id, to_i64(now)],
                    )?;
                    Revocation::Revoked
                }
            })
        })
    }

    /// Is `key` a valid API key? Looks the key up by its SHA-256 in the hash index.
    ///
    /// The key itself is never compared, so there is no byte-by-byte comparison whose time
    /// could leak how much of a guess was right; the lookup's time can tell at most whether
    /// some key has this hash, which for a 256-bit hash of a guess is never. Nothing of `key`
    /// is logged or kept.
    pub fn check_api_key(&self, key: &str) -> Result<ApiKeyCheck> {
        let hash = hash_api_key(key);
        let found = match self.db.query_opt(
            "SELECT id, project, revoked FROM api_keys WHERE key_hash = ?1",
            args![hash.as_slice()],
        )? {
            Some(row) => Some((row.text(0)?, row.text(1)?, row.opt_int(2)?)),
            None => None,
        };
        Ok(match found {
            None => ApiKeyCheck::Unknown,
            Some((key_id, _, Some(_))) => ApiKeyCheck::Revoked { key_id },
            Some((key_id, consumer_project, None)) => ApiKeyCheck::Valid {
                key_id,
                consumer_project,
            },
        })
    }
}

/// The error for an id that names no key; when the "id" is in fact an API key, the error says
/// so without repeating the key.
fn unknown_api_key(id: &str) -> IamError {
    if looks_like_api_key(id) {
        IamError::ApiKeyGivenForId {
            prefix: key_prefix(id).to_owned(),
        }
    } else {
        IamError::UnknownApiKey(id.to_owned())
    }
}
