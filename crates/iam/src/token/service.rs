//! [`TokenService`]: the token service's keys and tokens over the store.
//!
//! Blocking (store queries, RSA key generation): async callers run it on `spawn_blocking`. One
//! read-write connection, behind a mutex, is the service's whole use of the store: writes are
//! few (a key per rotation, a row per access token) and short.
//!
//! Parts: [`store_slot`] lends the store connection to one call at a time; [`tokens`] issues
//! the ID and access tokens and signs as accounts. This file holds the settings, the signing
//! keys' rotation and the published keys.

mod store_slot;
mod tokens;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clock::SharedClock;

use super::rotation::{
    KeyWindow, RotationPolicy, ScheduledKey, plan_rotation, published_keys, signing_key,
};
use crate::ids::new_key_id;
use crate::kek::Kek;
use crate::keyfile::self_signed_certificate;
use crate::model::{Account, KeyAlgorithm, StoredKey};
use crate::server::CACHE_MAX_AGE_SECS;
use crate::store::managed_keys::{
    check_kek, delete_managed_key, insert_managed_key, managed_keys, set_window,
};
use crate::store::{KeyOwner, ManagedKey, Store, StoreLocation};
use crate::{IamError, Result, render};
use store_slot::{Lent, StoreSlot};

/// Default of `--signing-key-rotation`: a token-service key signs for 24 h.
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// Least `--signing-key-rotation`: 1 h.
pub const MIN_ROTATION: Duration = Duration::from_secs(3600);
/// Most `--signing-key-rotation`: 90 days.
pub const MAX_ROTATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Lifetime of ID tokens, and the most an access token may live: 1 h, as Google's.
pub const ID_TOKEN_LIFETIME_SECS: u64 = 3600;
/// A new signing key is published this long before it signs: the certificates' max-age plus
/// 2 minutes, so a verifier's cached copy holds it before its first token arrives.
pub const PUBLISH_AHEAD_SECS: u64 = CACHE_MAX_AGE_SECS + 120;
/// A retired key stays published this long after its last token expired (verifiers' skew).
pub const RETIRE_MARGIN_SECS: u64 = 300;
/// Access tokens are this prefix and 43 base64url characters (32 random bytes).
pub const ACCESS_TOKEN_PREFIX: &str = "esprit-at.";

/// How `iam serve` runs its token service.
#[derive(Clone, Debug)]
pub struct TokenServiceSettings {
    /// The issuer URL (`iss` of the ID tokens; the base of the endpoints), without trailing `/`.
    pub issuer_url: String,
    /// Seals the server-managed private keys.
    pub kek: Kek,
    /// How long one signing key signs ([`MIN_ROTATION`]..=[`MAX_ROTATION`]).
    pub rotation: Duration,
    /// The wall clock (tokens' `iat`/`exp`, key windows).
    pub clock: SharedClock,
}

impl TokenServiceSettings {
    /// `issuer_url` and `kek` with the default rotation and the system clock.
    pub fn new(issuer_url: impl Into<String>, kek: Kek) -> TokenServiceSettings {
        TokenServiceSettings {
            issuer_url: issuer_url.into(),
            kek,
            rotation: DEFAULT_ROTATION,
            clock: clock::system(),
        }
    }
}

/// Checks an issuer URL: `http(s)://host…`, no query, fragment or blanks; trailing `/` dropped.
pub(crate) fn parse_issuer_url(url: &str) -> Result<String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !trimmed.contains(['?', '#'])
                && !trimmed.contains(char::is_whitespace) =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(IamError::InvalidIssuerUrl(url.to_owned())),
    }
}

/// The token service. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct TokenService {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    kek: Kek,
    policy: RotationPolicy,
    clock: SharedClock,
    store: StoreSlot,
    /// Unsealed signers by key id (a key's private half never changes).
    signers: Mutex<HashMap<String, Arc<jose::Signer>>>,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.inner.issuer)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

fn scheduled(keys: &[ManagedKey]) -> Vec<ScheduledKey> {
    keys.iter()
        .map(|k| ScheduledKey {
            key_id: k.key_id.clone(),
            window: k.window,
        })
        .collect()
}

/// A new RSA key for `owner`, its private half sealed; `window` to be set by the caller.
fn new_sealed_key(kek: &Kek, owner: KeyOwner, common_name: &str, now: u64) -> Result<ManagedKey> {
    let generated = jose::generate_rsa_2048()?;
    let key_id = new_key_id()?;
    let certificate_pem = self_signed_certificate(&generated.private_pkcs8_pem, common_name, now)?;
    let sealed_private_key =
        kek.seal(generated.private_pkcs8_pem.as_bytes(), &owner.aad(&key_id))?;
    Ok(ManagedKey {
        key_id,
        owner,
        algorithm: KeyAlgorithm::Rs256,
        sealed_private_key,
        public_key_pem: generated.public_spki_pem.clone(),
        certificate_pem,
        created: now,
        window: KeyWindow {
            sign_from: now,
            sign_until: now,
            publish_until: now,
        },
    })
}

impl TokenService {
    /// Opens the store at `store` (creating and migrating it), checks the KEK against the
    /// store ([`IamError::KekMismatch`] when its managed keys were sealed with another), and
    /// brings the signing keys up to date (the first key is made now).
    pub fn open(
        store: impl Into<StoreLocation>,
        settings: TokenServiceSettings,
    ) -> Result<TokenService> {
        let issuer = parse_issuer_url(&settings.issuer_url)?;
        let rotation = settings.rotation;
        if rotation < MIN_ROTATION || rotation > MAX_ROTATION {
            return Err(IamError::RotationOutOfRange {
                secs: rotation.as_secs(),
                min: MIN_ROTATION.as_secs(),
                max: MAX_ROTATION.as_secs(),
            });
        }
        let store = Store::open(store)?;
        check_kek(&store, &settings.kek)?;
        let service = TokenService {
            inner: Arc::new(Inner {
                issuer,
                kek: settings.kek,
                policy: RotationPolicy {
                    rotation: rotation.as_secs(),
                    publish_ahead: PUBLISH_AHEAD_SECS,
                    token_lifetime: ID_TOKEN_LIFETIME_SECS,
                    retire_margin: RETIRE_MARGIN_SECS,
                },
                clock: settings.clock,
                store: StoreSlot::new(store),
                signers: Mutex::new(HashMap::new()),
            }),
        };
        // Fails now, not at the first token, when a sealed key does not open.
        let (signer, _) = service.token_keys(service.now())?;
        service.signer(&signer)?;
        Ok(service)
    }

    /// The issuer URL, without trailing `/`.
    pub fn issuer_url(&self) -> &str {
        &self.inner.issuer
    }

    /// `{issuer}/token`: the token endpoint, also accepted as an assertion's `aud`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.inner.issuer)
    }

    /// The service's wall clock, seconds since the epoch.
    pub fn now(&self) -> u64 {
        self.inner.clock.unix_secs()
    }

    /// The service's store connection, waiting at most
    /// [`STORE_WAIT`](store_slot::STORE_WAIT) for it.
    fn store(&self) -> Result<Lent<'_>> {
        self.inner.store.lend()
    }

    /// The key that signs at `now` and the published keys, after carrying out the rotation
    /// plan (in one write transaction that re-reads and re-plans, so that several servers
    /// on one store make one successor, not one each).
    fn token_keys(&self, now: u64) -> Result<(ManagedKey, Vec<ManagedKey>)> {
        let owner = KeyOwner::TokenService;
        let policy = &self.inner.policy;
        let mut keys = managed_keys(&*self.store()?, &owner)?;
        let plan = plan_rotation(&scheduled(&keys), now, policy);
        if !plan.is_empty() {
            // Made before the connection and the write lock are taken (RSA generation takes a
            // while); unused if another server or thread got there first.
            let mut fresh = match plan.create {
                Some(_) => Some(new_sealed_key(
                    &self.inner.kek,
                    owner.clone(),
                    "esprit token service",
                    now,
                )?),
                None => None,
            };
            let store = self.store()?;
            store.write(|tx| {
                let current = managed_keys(tx, &owner)?;
                let plan = plan_rotation(&scheduled(&current), now, policy);
                for key_id in &plan.retire {
                    delete_managed_key(tx, key_id)?;
                    tracing::info!(kid = %key_id, "token service key retired");
                }
                if let Some((key_id, window)) = &plan.extend {
                    set_window(tx, key_id, window)?;
                    tracing::info!(kid = %key_id, sign_until = window.sign_until, "token service key extended until its successor may sign");
                }
                if let Some(window) = plan.create {
                    let mut key = match fresh.take() {
                        Some(key) => key,
                        None => new_sealed_key(
                            &self.inner.kek,
                            owner.clone(),
                            "esprit token service",
                            now,
                        )?,
                    };
                    key.window = window;
                    insert_managed_key(tx, &key, &self.inner.kek)?;
                    tracing::info!(kid = %key.key_id, sign_from = window.sign_from, "token service key created");
                }
                Ok(())
            })?;
            keys = managed_keys(&store, &owner)?;
        }
        let schedule = scheduled(&keys);
        let signer_id = signing_key(&schedule, now)
            .map(|k| k.key_id.clone())
            .ok_or_else(|| IamError::StoreCorrupt("no token service key signs now".into()))?;
        let published: Vec<String> = published_keys(&schedule, now)
            .into_iter()
            .map(|k| k.key_id.clone())
            .collect();
        let signer = keys
            .iter()
            .find(|k| k.key_id == signer_id)
            .cloned()
            .ok_or_else(|| IamError::StoreCorrupt("signing key vanished".into()))?;
        let published = published
            .iter()
            .filter_map(|id| keys.iter().find(|k| &k.key_id == id).cloned())
            .collect();
        Ok((signer, published))
    }

    /// The unsealed signer of `key` (cached by key id).
    fn signer(&self, key: &ManagedKey) -> Result<Arc<jose::Signer>> {
        let mut signers = self
            .inner
            .signers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(signer) = signers.get(&key.key_id) {
            return Ok(signer.clone());
        }
        let unseal = || IamError::Unseal {
            key_id: key.key_id.clone(),
        };
        let pem = self
            .inner
            .kek
            .open(&key.sealed_private_key, &key.owner.aad(&key.key_id))
            .ok_or_else(unseal)?;
        let pem = String::from_utf8(pem).map_err(|_| unseal())?;
        let signer = Arc::new(jose::Signer::from_pkcs8_pem(&pem).map_err(|_| unseal())?);
        // Keys are few (a handful of token-service keys, one per account that used signJwt).
        signers.insert(key.key_id.clone(), signer.clone());
        Ok(signer)
    }

    /// The token service's published keys now (public halves), by `sign_from`.
    pub fn published_keys(&self) -> Result<Vec<StoredKey>> {
        let (_, published) = self.token_keys(self.now())?;
        Ok(published.iter().map(ManagedKey::public).collect())
    }

    /// `GET /oauth2/v3/certs`: the published keys as a JWKS.
    pub fn jwks(&self) -> Result<String> {
        render::jwks(&self.published_keys()?)
    }

    /// `GET /oauth2/v1/certs`: the published keys as an X.509 map (same kids).
    pub fn x509_map(&self) -> Result<String> {
        Ok(render::x509_map(&self.published_keys()?))
    }

    /// The account `email` ([`IamError::UnknownAccount`] when there is none).
    pub fn account(&self, email: &str) -> Result<Account> {
        self.store()?.account(email)
    }

    /// The keys an assertion of `email` may be signed with: the account's published keys
    /// (enabled key-file keys and server-managed keys).
    pub fn assertion_keys(&self, email: &str) -> Result<Vec<StoredKey>> {
        self.store()?.served_keys(email)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn issuer_urls() {
        for (url, want) in [
            ("http://127.0.0.1:8085", Some("http://127.0.0.1:8085")),
            ("https://iam.example.com/", Some("https://iam.example.com")),
            (
                "https://iam.example.com/tenant",
                Some("https://iam.example.com/tenant"),
            ),
            ("iam.example.com", None),
            ("ftp://x", None),
            ("https://", None),
            ("https://x/?a=b", None),
            ("https://x/#f", None),
            ("https://x y", None),
        ] {
            assert_eq!(parse_issuer_url(url).ok().as_deref(), want, "{url}");
        }
    }
}
