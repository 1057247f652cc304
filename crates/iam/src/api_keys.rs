//! API keys: making them, hashing them for the store, and the answer of a key check.
//!
//! A key looks like Google's: `AIza` followed by 35 base64url characters (39 in all). Only its
//! SHA-256 and its first 8 characters (the [`key_prefix`], to recognise it in lists and logs)
//! are kept; the key itself is shown once, when it is made.

use crate::ids::random_bytes;
use crate::{IamError, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Every API key starts with this, as Google's do.
pub const API_KEY_PREFIX: &str = "AIza";

/// The random characters after [`API_KEY_PREFIX`]: 35 base64url characters, 210 bits.
const RANDOM_CHARS: usize = 35;

/// The length of an API key: `AIza` and 35 characters.
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + RANDOM_CHARS;

/// How many leading characters of a key are kept and shown (`AIza` and 4 random ones).
pub const SHOWN_PREFIX_LEN: usize = 8;

/// The longest display name of a key, in characters (Google's `displayName` limit).
pub const MAX_NAME_CHARS: usize = 63;

/// A new API key: `AIza` and 35 base64url characters from 27 bytes of aws-lc-rs's random
/// generator (216 bits drawn, 210 kept: the 36th character is dropped so every kept character is
/// uniform over 64 values).
pub fn new_api_key() -> Result<String> {
    let bytes = random_bytes::<27>()?;
    let mut encoded = URL_SAFE_NO_PAD.encode(bytes);
    encoded.truncate(RANDOM_CHARS);
    Ok(format!("{API_KEY_PREFIX}{encoded}"))
}

/// The hash the store keeps in place of a key: SHA-256 of its bytes.
///
/// A fast, unsalted hash is right here, unlike for passwords: an API key carries 210 random
/// bits, so no dictionary or brute-force search over the hash is possible however fast the hash
/// is, and an unsalted hash lets the key server find a key with one index lookup on the hash
/// (the caller sends only the key, not its id). A slow hash would only make every check slow.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// The part of a key that may be shown and logged: its first 8 characters, and never more than
/// a quarter of the text (so a short secret pasted by mistake is not logged whole).
pub fn key_prefix(key: &str) -> &str {
    let shown = SHOWN_PREFIX_LEN.min(key.chars().count() / 4);
    let end = key.char_indices().nth(shown).map_or(key.len(), |(i, _)| i);
    &key[..end]
}

/// Whether `text` has the shape of an API key (so it must not be echoed in an error message).
pub fn looks_like_api_key(text: &str) -> bool {
    text.len() == API_KEY_LEN
        && text.starts_with(API_KEY_PREFIX)
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new key id: a random UUID (version 4), the shape of Google's API key `uid`.
pub fn new_api_key_id() -> Result<String> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Checks a key's display name: at most 63 characters, no control characters, not blank.
pub fn validate_api_key_name(name: &str) -> Result<()> {
    let reason = if name.trim().is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("must be at most 63 characters long")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(IamError::InvalidApiKeyName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// An API key as the store keeps it: everything but the key (only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id (a UUID): what `api-keys revoke` takes and what logs name.
    pub id: String,
    /// The consumer project the key belongs to.
    pub project: String,
    /// A display name, if one was given.
    pub name: Option<String>,
    /// The key's first 8 characters ([`key_prefix`]), to recognise it.
    pub prefix: String,
    /// When it was created, seconds since the Unix epoch.
    pub created: u64,
    /// When it was revoked, seconds since the Unix epoch; `None` while it is valid.
    pub revoked: Option<u64>,
}

/// What [`crate::Store::revoke_api_key`] did. Revoking is idempotent: revoking a revoked key
/// succeeds and keeps the first revocation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// The key was valid and is revoked now.
    Revoked,
    /// The key had been revoked already, at this time (seconds since the epoch).
    AlreadyRevoked {
        /// The first revocation.
        at: u64,
    },
}

/// What the store says about a key: the result of [`crate::Store::check_api_key`].
///
/// This is the key server's own view (with the key's id, for its log). What goes back to the
/// caller of the check endpoint is [`ApiKeyCheck::answer`]: the `keycheck` contract, which says
/// only valid or not, and the consumer project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeyCheck {
    /// The key exists and is not revoked.
    Valid {
        /// The key's id.
        key_id: String,
        /// The project that owns the key (Service Control's consumer project).
        consumer_project: String,
    },
    /// No key has this hash.
    Unknown,
    /// The key exists and was revoked.
    Revoked {
        /// The key's id.
        key_id: String,
    },
}

impl ApiKeyCheck {
    /// Whether the key may be used.
    pub fn is_valid(&self) -> bool {
        matches!(self, ApiKeyCheck::Valid { .. })
    }

    /// `valid`, `unknown` or `revoked`: the result word used in logs.
    pub fn result_name(&self) -> &'static str {
        match self {
            ApiKeyCheck::Valid { .. } => "valid",
            ApiKeyCheck::Unknown => "unknown",
            ApiKeyCheck::Revoked { .. } => "revoked",
        }
    }

    /// The key's id, when the key exists.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            ApiKeyCheck::Valid { key_id, .. } | ApiKeyCheck::Revoked { key_id } => Some(key_id),
            ApiKeyCheck::Unknown => None,
        }
    }

    /// The answer the check endpoint gives: no key id, and unknown and revoked look alike (an
    /// anonymous caller must not learn which keys once existed).
    pub fn answer(&self) -> keycheck::CheckResponse {
        match self {
            ApiKeyCheck::Valid {
                consumer_project, ..
            } => keycheck::CheckResponse::Valid {
                consumer_project: consumer_project.clone(),
            },
            ApiKeyCheck::Unknown | ApiKeyCheck::Revoked { .. } => keycheck::CheckResponse::Invalid,
        }
    }
}

#[cfg(test)]
mod tests;
