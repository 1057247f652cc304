//! The edge around `authn`'s pure decision: the clock, the key caches, the verified-token cache,
//! and one refetch when a token names a key we do not have yet.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authn::{AuthError, AuthInputs, MethodPolicy, Verdict, VerifiedToken};
use jwks_cache::{JwksCache, Refetch};
use service_config::ProviderId;

/// How tokens are checked; the defaults are ESP's, except the verified-token cache size.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwks: jwks_cache::Settings,
    /// Verified tokens remembered, so a repeated token skips its signature (time, issuer and
    /// audience are still checked on every call). ESPv2's default is 1000; ours 10 000.
    pub jwt_cache_size: u64,
    /// Tolerance on `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwks: jwks_cache::Settings::default(),
            jwt_cache_size: 10_000,
            clock_skew: authn::DEFAULT_SKEW,
        }
    }
}

/// Shared by every call of a proxy whose config has JWT rules.
pub(crate) struct Authenticator {
    keys: JwksCache,
    verified: moka::sync::Cache<Box<str>, Arc<VerifiedToken>>,
    skew: Duration,
}

impl Authenticator {
    /// Starts fetching every provider's keys in the background; returns at once.
    pub(crate) fn start(
        config: &service_config::ServiceConfig,
        settings: &AuthSettings,
    ) -> Result<Self, jwks_cache::FetchError> {
        let keys = JwksCache::new(config.providers(), settings.jwks.clone())?;
        keys.start();
        Ok(Self {
            keys,
            // An entry lives no longer than a key set does: a token verified with a key that is
            // then withdrawn stops being accepted once the key set would have been refreshed,
            // as a token seen for the first time would.
            verified: moka::sync::Cache::builder()
                .max_capacity(settings.jwt_cache_size)
                .time_to_live(settings.jwks.cache_duration)
                .build(),
            skew: settings.clock_skew,
        })
    }

    /// `authn::authenticate`, plus one key refetch when the token's `kid` is unknown (or the keys
    /// were never obtained), so that a freshly rotated key works on its first call.
    pub(crate) async fn authenticate(
        &self,
        policy: &MethodPolicy,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<Verdict, AuthError> {
        let first = self.decide(policy, headers, uri);
        let (provider, kid) = match &first {
            Err(err) => match err.refetch_hint() {
                Some(provider) => (provider.clone(), err.unknown_kid().cloned()),
                None => return first,
            },
            Ok(_) => return first,
        };
        match self.keys.refetch(&provider, kid.as_ref()).await {
            Refetch::Fetched | Refetch::Joined => self.decide(policy, headers, uri),
            outcome => {
                tracing::debug!(%provider, kid = kid.as_ref().map(jose::Kid::as_str), ?outcome, "key refetch brought nothing new");
                first
            }
        }
    }

    fn decide(
        &self,
        policy: &MethodPolicy,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<Verdict, AuthError> {
        let inputs = AuthInputs {
            keys: &Keys(&self.keys),
            cache: &Verified(&self.verified),
            now: now(),
            skew: self.skew,
        };
        authn::authenticate(policy, headers, uri, &inputs)
    }
}

fn now() -> jose::UnixTime {
    // A clock before 1970 is treated as 1970: every token then looks not yet valid (fail closed).
    jose::UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

struct Keys<'a>(&'a JwksCache);

impl authn::KeySets for Keys<'_> {
    fn get(&self, provider: &ProviderId) -> authn::KeyState {
        match self.0.state(provider) {
            jwks_cache::KeyState::Ready(keys) => authn::KeyState::Ready(keys),
            jwks_cache::KeyState::NotFetched { .. } => authn::KeyState::NotFetched,
        }
    }
}

/// Keyed by the whole token string, as `authn::VerifiedTokens` requires: two different tokens
/// can never share an entry.
struct Verified<'a>(&'a moka::sync::Cache<Box<str>, Arc<VerifiedToken>>);

impl authn::VerifiedTokens for Verified<'_> {
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        self.0.get(token)
    }

    fn put(&self, token: &str, verified: Arc<VerifiedToken>) {
        self.0.insert(Box::from(token), verified);
    }
}
