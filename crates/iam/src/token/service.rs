//! [`TokenService`]: the token service's keys and tokens over the store.
//!
//! Blocking (store queries, RSA key generation): async callers run it on `spawn_blocking`. One
//! read-write connection, behind a mutex, is the service's whole use of the store: writes are
//! few (a key per rotation, a row per access token) and short.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clock::SharedClock;
use serde_json::{Map, Value};

use super::rotation::{
    KeyWindow, RotationPolicy, ScheduledKey, plan_rotation, published_keys, signing_key,
};
use crate::ids::{new_key_id, random_bytes};
use crate::kek::Kek;
use crate::keyfile::self_signed_certificate;
use crate::model::{Account, KeyAlgorithm, StoredKey};
use crate::server::CACHE_MAX_AGE_SECS;
use crate::store::db::{Violation, violation};
use crate::store::managed_keys::{
    access_token_owner, check_kek, delete_managed_key, insert_access_token, insert_managed_key,
    managed_keys, purge_access_tokens, set_window,
};
use crate::store::{KeyOwner, ManagedKey, Store, StoreLocation};
use crate::{IamError, Result, render};

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

/// Expired access-token rows deleted at most per issued token.
const PURGE_BATCH: u32 = 100;

/// The longest a call waits for the service's store connection before [`IamError::StoreBusy`].
pub const STORE_WAIT: Duration = Duration::from_secs(2);

/// The service's one read-write store connection, lent to one call at a time; a call waits at
/// most [`STORE_WAIT`] for it (the bounded writer path of `iam serve`, beside the read-only pool).
struct StoreSlot {
    store: Mutex<Store>,
    busy: Mutex<bool>,
    free: Condvar,
}

/// The connection, lent until dropped.
struct Lent<'a> {
    slot: &'a StoreSlot,
    store: MutexGuard<'a, Store>,
}

impl StoreSlot {
    fn new(store: Store) -> StoreSlot {
        StoreSlot {
            store: Mutex::new(store),
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    fn lend(&self) -> Result<Lent<'_>> {
        let deadline = Instant::now() + STORE_WAIT;
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IamError::StoreBusy { waited: STORE_WAIT });
            }
            busy = self
                .free
                .wait_timeout(busy, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *busy = true;
        drop(busy);
        Ok(Lent {
            slot: self,
            store: self.store.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        // Also on a panic of the borrower: the slot is never left busy.
        *self
            .slot
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.slot.free.notify_one();
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

/// Token-service keys sign until this date when they do not rotate (account keys).
const FOREVER: u64 = i64::MAX as u64;

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

fn sha256(text: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
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

    /// The service's store connection, waiting at most [`STORE_WAIT`] for it.
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

    /// Signs `claims` with the token service's current key: `(kid, JWT)`.
    fn sign_as_service(&self, claims: &Map<String, Value>) -> Result<(String, String)> {
        let (key, _) = self.token_keys(self.now())?;
        let signer = self.signer(&key)?;
        let token = signer.sign_jwt(
            Some(&key.key_id),
            jose::Algorithm::RS256,
            &Value::Object(claims.clone()),
        )?;
        Ok((key.key_id, token))
    }

    /// ID token signed by the token service: iss = issuer_url, aud = audience, sub = account.unique_id,
    /// azp = unique_id, email + email_verified only when include_email, iat/exp integers, exp = iat + 3600.
    pub fn issue_id_token(
        &self,
        account: &Account,
        audience: &str,
        include_email: bool,
    ) -> Result<String> {
        self.issue_id_token_with(account, audience, include_email, false)
    }

    /// [`issue_id_token`](Self::issue_id_token), with `azp` = the account's email instead of
    /// its unique id when `email_azp` (the IAM Credentials API's `useEmailAzp`).
    pub fn issue_id_token_with(
        &self,
        account: &Account,
        audience: &str,
        include_email: bool,
        email_azp: bool,
    ) -> Result<String> {
        let now = self.now();
        let mut claims = Map::new();
        claims.insert("iss".into(), self.inner.issuer.clone().into());
        claims.insert("aud".into(), audience.into());
        let azp = if email_azp {
            &account.email
        } else {
            &account.unique_id
        };
        claims.insert("azp".into(), azp.clone().into());
        claims.insert("sub".into(), account.unique_id.clone().into());
        if include_email {
            claims.insert("email".into(), account.email.clone().into());
            claims.insert("email_verified".into(), true.into());
        }
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ID_TOKEN_LIFETIME_SECS).into());
        let (kid, token) = self.sign_as_service(&claims)?;
        tracing::debug!(%kid, email = %account.email, "ID token issued");
        Ok(token)
    }

    /// An access token for `account` (lifetime ≤ 3600 s, refused above). Returns (token, expires_at unix secs).
    ///
    /// The token is [`ACCESS_TOKEN_PREFIX`] and 32 random bytes in base64url; the store keeps
    /// its SHA-256 with the account, scopes and expiry (deleted with the account); up to 100
    /// expired rows are purged first. [`IamError::UnknownAccount`] when the account is gone,
    /// [`IamError::AccessTokenLifetime`] outside 1..=3600 s (whole seconds).
    pub fn issue_access_token(
        &self,
        account: &Account,
        scopes: &[String],
        lifetime: Duration,
    ) -> Result<(String, u64)> {
        let secs = lifetime.as_secs();
        if lifetime.subsec_nanos() != 0 || !(1..=ID_TOKEN_LIFETIME_SECS).contains(&secs) {
            return Err(IamError::AccessTokenLifetime { secs });
        }
        let now = self.now();
        let token = format!(
            "{ACCESS_TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let expires = now + secs;
        let store = self.store()?;
        purge_access_tokens(&store, now, PURGE_BATCH)?;
        match insert_access_token(&store, &sha256(&token), &account.email, scopes, expires) {
            Ok(()) => Ok((token, expires)),
            Err(err) if violation(&err).is_some() => {
                Err(IamError::UnknownAccount(account.email.clone()))
            }
            Err(err) => Err(err),
        }
    }

    /// The account (still existing) and scopes an unexpired access token was issued to; Ok(None) when unknown/expired/account gone.
    pub fn access_token_owner(&self, bearer: &str) -> Result<Option<(Account, Vec<String>)>> {
        if !bearer.starts_with(ACCESS_TOKEN_PREFIX) || bearer.len() > 256 {
            return Ok(None);
        }
        let now = self.now();
        access_token_owner(&*self.store()?, &sha256(bearer), now)
    }

    /// Signs `claims` (a JSON object) with a server-managed key of `account` (created on first use, sealed
    /// with the KEK, published in that account's /robot/v1/metadata/x509 and /service_accounts/v1/jwk documents).
    /// Returns (kid, compact JWT). Validates nothing about the claims (the endpoint does).
    pub fn sign_jwt_as(
        &self,
        account: &Account,
        claims: &Map<String, Value>,
    ) -> Result<(String, String)> {
        let owner = KeyOwner::Account(account.email.clone());
        let now = self.now();
        let existing = managed_keys(&*self.store()?, &owner)?.pop();
        let key = {
            match existing {
                Some(key) => key,
                None => {
                    // Made before the connection is taken (RSA generation takes a while).
                    let mut fresh =
                        new_sealed_key(&self.inner.kek, owner.clone(), &account.email, now)?;
                    let store = self.store()?;
                    fresh.window = KeyWindow {
                        sign_from: now,
                        sign_until: FOREVER,
                        publish_until: FOREVER,
                    };
                    store.write(|tx| {
                        // Another server may have made one meanwhile: use it.
                        if let Some(key) = managed_keys(tx, &owner)?.pop() {
                            return Ok(key);
                        }
                        match insert_managed_key(tx, &fresh, &self.inner.kek) {
                            Ok(()) => {}
                            Err(err) if violation(&err) == Some(Violation::ForeignKey) => {
                                return Err(IamError::UnknownAccount(account.email.clone()));
                            }
                            Err(err) => return Err(err),
                        }
                        tracing::info!(kid = %fresh.key_id, email = %account.email, "server-managed account key created");
                        Ok(fresh.clone())
                    })?
                }
            }
        };
        let signer = self.signer(&key)?;
        let token = signer.sign_jwt(
            Some(&key.key_id),
            jose::Algorithm::RS256,
            &Value::Object(claims.clone()),
        )?;
        Ok((key.key_id, token))
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
    fn the_store_connection_is_lent_to_one_call_at_a_time_and_waits_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let slot = StoreSlot::new(Store::open(dir.path().join("iam.db")).unwrap());
        let held = slot.lend().unwrap();
        let started = Instant::now();
        let waited = std::thread::scope(|s| s.spawn(|| slot.lend().map(|_| ())).join().unwrap());
        assert!(
            matches!(waited, Err(IamError::StoreBusy { .. })),
            "{waited:?}"
        );
        assert!(started.elapsed() >= STORE_WAIT);
        // A waiter gets it as soon as it is returned.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slot.lend().map(|_| ()));
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            waiter.join().unwrap().unwrap();
        });
        // A borrower that panics returns it too.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lent = slot.lend().unwrap();
            panic!("borrower fails");
        }));
        assert!(panicked.is_err());
        let started = Instant::now();
        slot.lend().unwrap();
        assert!(started.elapsed() < STORE_WAIT);
    }

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
