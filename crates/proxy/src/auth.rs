//! The authenticate (JWT) step, and the edge around `authn`'s pure decision: the clock, the key
//! caches, the verified-token cache, and one refetch when a token names a key we do not have yet.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clock::SharedClock;

use authn::{Allowed, AuthError, AuthInputs, MethodPolicy, VerifiedToken};
use keysets::{JwksCache, Refetch};
use service_config::ProviderId;

use crate::wire::Rejection;

const USERINFO: http::HeaderName = http::HeaderName::from_static("x-endpoint-api-userinfo");

/// What a route that checks JWTs carries: its rule, and the authenticator that holds the keys.
pub(crate) struct JwtRequirement {
    pub policy: Arc<MethodPolicy>,
    pub authenticator: Arc<Authenticator>,
}

impl JwtRequirement {
    /// The step: on success the request carries `x-endpoint-api-userinfo` when a token was
    /// verified (client-sent copies were removed by the sanitize step).
    pub(crate) async fn check(&self, parts: &mut http::request::Parts) -> Result<(), Rejection> {
        let verdict = self
            .authenticator
            .authenticate(&self.policy, &parts.headers, &parts.uri)
            .await;
        if let Some(metrics) = &self.authenticator.metrics {
            match &verdict {
                Ok(allowed) => metrics.allowed(allowed.principal.as_ref().map(|p| p.provider())),
                Err(err) => metrics.failed(err),
            }
        }
        let Allowed { principal } = verdict.map_err(Rejection::Auth)?;
        if let Some(principal) = principal {
            // ESPv2: the verified token's payload segment, base64url without padding, as it
            // appeared in the token: always a valid header value, made once per verified token.
            let value = principal.userinfo().cloned().ok_or(Rejection::Internal(
                "verified claims are not a header value",
            ))?;
            parts.headers.insert(USERINFO, value);
        }
        Ok(())
    }
}

/// How tokens are checked; the defaults are ESP's, except the verified-token cache size.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwks: keysets::JwksSettings,
    /// Verified tokens remembered, so a repeated token skips its signature (time, issuer and
    /// audience are still checked on every call). ESPv2's default is 1000; ours 10 000.
    pub jwt_cache_size: u64,
    /// Bytes the verified tokens may occupy (weighed by [`verified_weight`]): 64 MiB by default,
    /// so 10 000 ordinary tokens fit, and at most a few hundred of 64 KiB.
    pub jwt_cache_bytes: u64,
    /// Tolerance on `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwks: keysets::JwksSettings::default(),
            jwt_cache_size: 10_000,
            jwt_cache_bytes: 64 * 1024 * 1024,
            clock_skew: authn::DEFAULT_SKEW,
        }
    }
}

/// Shared by every call of a proxy whose config has JWT rules.
pub(crate) struct Authenticator {
    keys: JwksCache,
    /// The providers of the configuration this authenticator serves (a reload compares them).
    providers: Vec<service_config::AuthProvider>,
    verified: VerifiedCache,
    /// How long a verified token is remembered (the key sets' freshness).
    verified_lifetime: Duration,
    skew: Duration,
    /// Read for `now` (token times) and the verified-token cache's expiry.
    clock: SharedClock,
    /// With `--admin-listen`: outcomes, cache hits and misses, refetches.
    pub metrics: Option<crate::metrics::AuthMetrics>,
}

impl Authenticator {
    /// Starts fetching every provider's keys in the background; returns at once.
    pub(crate) fn start(
        config: &service_config::ServiceConfig,
        settings: &AuthSettings,
        clock: SharedClock,
        metrics: Option<crate::metrics::AuthMetrics>,
    ) -> Result<Self, keysets::FetchError> {
        let keys = JwksCache::new(config.providers(), settings.jwks.clone())?;
        keys.start();
        Ok(Self {
            keys,
            providers: config.providers().to_vec(),
            // An entry lives no longer than a key set does: a token verified with a key that is
            // then withdrawn stops being accepted once the key set would have been refreshed,
            // as a token seen for the first time would.
            verified: verified_cache(settings),
            verified_lifetime: settings.jwks.cache_duration,
            skew: settings.clock_skew,
            clock,
            metrics,
        })
    }

    /// The authenticator of a reloaded configuration: the key sets of providers whose id,
    /// issuer and `jwks_uri` are unchanged are kept, with their refresh tasks (no fetch);
    /// changed and new providers start fetching in the background. The verified-token cache is
    /// kept only when no provider's keys changed: an entry means "signature checked with this
    /// provider's keys", which a new key source no longer vouches for.
    pub(crate) fn reconfigure(
        &self,
        config: &service_config::ServiceConfig,
        settings: &AuthSettings,
        metrics: Option<crate::metrics::AuthMetrics>,
    ) -> Self {
        let keys = self.keys.reconfigure(config.providers());
        keys.start();
        let same_keys = self.providers.len() == config.providers().len()
            && config
                .providers()
                .iter()
                .all(|p| keys.shares_provider(&self.keys, &p.id));
        Self {
            keys,
            providers: config.providers().to_vec(),
            verified: if same_keys {
                self.verified.clone()
            } else {
                verified_cache(settings)
            },
            verified_lifetime: self.verified_lifetime,
            skew: self.skew,
            clock: self.clock.clone(),
            metrics,
        }
    }

    /// The key sets (readiness and metrics read their state).
    pub(crate) fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// `authn::authenticate`, plus one key refetch when the token's `kid` is unknown (or the keys
    /// were never obtained), so that a freshly rotated key works on its first call.
    pub(crate) async fn authenticate(
        &self,
        policy: &MethodPolicy,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<Allowed, AuthError> {
        let first = self.decide(policy, headers, uri);
        let (provider, kid) = match &first {
            Err(err) => match err.refetch_hint() {
                Some(provider) => (provider.clone(), err.unknown_kid().cloned()),
                None => return first,
            },
            Ok(_) => return first,
        };
        let refetch = self.keys.refetch(&provider, kid.as_ref()).await;
        if let Some(metrics) = &self.metrics {
            metrics.refetched(&provider, &refetch);
        }
        match refetch {
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
    ) -> Result<Allowed, AuthError> {
        let wall = self.clock.now();
        let inputs = AuthInputs {
            keys: &Keys(&self.keys),
            cache: &Verified {
                cache: &self.verified,
                now: wall,
                lifetime: self.verified_lifetime,
                metrics: self.metrics.as_ref(),
            },
            // A clock before 1970 reads as 1970: every token then looks not yet valid (fail
            // closed).
            now: jose::UnixTime(self.clock.unix_secs()),
            skew: self.skew,
        };
        authn::authenticate(policy, headers, uri, &inputs)
    }
}

struct Keys<'a>(&'a JwksCache);

impl authn::KeySets for Keys<'_> {
    fn get(&self, provider: &ProviderId) -> authn::ProviderKeys {
        match self.0.state(provider) {
            keysets::CachedKeySet::Ready(keys) => authn::ProviderKeys::Ready(keys),
            keysets::CachedKeySet::NotFetched { .. } => authn::ProviderKeys::NotFetched,
        }
    }
}

/// The cache key: the token itself. Equality of the whole token, so two different tokens never
/// share an entry; hashing it costs less than a digest would, and keeping its bytes reveals
/// nothing the entry does not already hold (a verified token keeps its signing input and
/// signature). Only verified tokens are inserted, so a client cannot choose the keys the
/// table holds.
type TokenKey = Box<str>;

/// A verified token, what it weighs, and until when (by the injected clock) it may be used.
#[derive(Clone)]
struct Entry<V> {
    verified: V,
    weight: u32,
    expires_at: SystemTime,
}

/// Hashed with foldhash (randomly seeded per cache), not moka's default SipHash: every call
/// with a token hashes the whole token (about 1 KiB) for the lookup, and only verified tokens
/// are inserted, so a client cannot choose colliding keys anyway.
type Hasher = foldhash::fast::RandomState;

type VerifiedCache = moka::sync::Cache<TokenKey, Entry<Arc<VerifiedToken>>, Hasher>;

/// What a verified token of `token_len` bytes occupies: the key (the token), and the parsed
/// token keeping its signing input, the decoded payload and header, the signature, the parsed
/// claims and the payload segment as a header value, about five bytes per token byte, plus the
/// entry's bookkeeping.
pub(crate) fn verified_weight(token_len: usize) -> u32 {
    let bytes = token_len.saturating_mul(5).saturating_add(1024);
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Bounded in bytes (`jwt_cache_bytes`); every entry weighs at least
/// `jwt_cache_bytes / jwt_cache_size`, so `jwt_cache_size` bounds the count too. An entry lives
/// no longer than a key set does: its `expires_at`, compared with the injected clock on every
/// read; moka's own time-to-live (on its own monotonic clock) only bounds how long the memory
/// is held.
fn verified_cache<V: Clone + Send + Sync + 'static>(
    settings: &AuthSettings,
) -> moka::sync::Cache<TokenKey, Entry<V>, Hasher> {
    let floor = settings.jwt_cache_bytes / settings.jwt_cache_size.max(1);
    let floor = u32::try_from(floor).unwrap_or(u32::MAX);
    moka::sync::Cache::builder()
        .max_capacity(settings.jwt_cache_bytes)
        .weigher(move |_: &TokenKey, entry: &Entry<V>| entry.weight.max(floor))
        .time_to_live(settings.jwks.cache_duration)
        .build_with_hasher(Hasher::default())
}

/// The verified-token cache as one decision sees it: `now` is read once per decision.
struct Verified<'a, V = Arc<VerifiedToken>> {
    cache: &'a moka::sync::Cache<TokenKey, Entry<V>, Hasher>,
    now: SystemTime,
    lifetime: Duration,
    /// Counts hits and misses (with `--admin-listen`).
    metrics: Option<&'a crate::metrics::AuthMetrics>,
}

impl<V: Clone + Send + Sync + 'static> Verified<'_, V> {
    /// The entry for `token` unless it has expired by the injected clock (then it is dropped).
    fn lookup(&self, token: &str) -> Option<V> {
        let found = self.find(token);
        if let Some(metrics) = self.metrics {
            match found {
                Some(_) => metrics.cache_hits.inc(),
                None => metrics.cache_misses.inc(),
            };
        }
        found
    }

    fn find(&self, token: &str) -> Option<V> {
        let entry = self.cache.get(token)?;
        if self.now < entry.expires_at {
            return Some(entry.verified);
        }
        self.cache.invalidate(token);
        None
    }

    fn store(&self, token: &str, verified: V) {
        let entry = Entry {
            verified,
            weight: verified_weight(token.len()),
            expires_at: self.now + self.lifetime,
        };
        self.cache.insert(Box::from(token), entry);
    }
}

impl authn::VerifiedTokens for Verified<'_> {
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        self.lookup(token)
    }

    fn put(&self, token: &str, verified: Arc<VerifiedToken>) {
        self.store(token, verified);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn insert_many(
        settings: &AuthSettings,
        token_len: usize,
        n: u32,
    ) -> moka::sync::Cache<TokenKey, Entry<()>, Hasher> {
        let cache = verified_cache::<()>(settings);
        for i in 0..n {
            let token = format!("{i:0>width$}", width = token_len);
            let weight = verified_weight(token.len());
            cache.insert(
                Box::from(token.as_str()),
                Entry {
                    verified: (),
                    weight,
                    expires_at: SystemTime::UNIX_EPOCH,
                },
            );
        }
        cache.run_pending_tasks();
        cache
    }

    #[test]
    fn large_tokens_stay_under_the_byte_bound() {
        let settings = AuthSettings {
            jwt_cache_bytes: 4 * 1024 * 1024,
            ..AuthSettings::default()
        };
        let cache = insert_many(&settings, 60 * 1024, 500);
        assert!(
            cache.weighted_size() <= settings.jwt_cache_bytes,
            "{}",
            cache.weighted_size()
        );
        // 60 KiB tokens weigh ~241 KiB each: about 17 fit in 4 MiB, far fewer than 500.
        assert!(cache.entry_count() <= 17, "{}", cache.entry_count());
        assert!(cache.entry_count() > 0);
    }

    #[test]
    fn the_entry_count_bound_still_holds_for_small_tokens() {
        let settings = AuthSettings {
            jwt_cache_size: 100,
            ..AuthSettings::default()
        };
        let cache = insert_many(&settings, 200, 5_000);
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
    }

    /// The step on its own: a method whose rule allows calls without a token, keys never
    /// fetched (nothing listens at the JWKS address).
    async fn requirement() -> JwtRequirement {
        let yaml = r#"
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: p
    issuer: issuer@example.com
    jwks_uri: http://127.0.0.1:9/jwks
  rules:
  - selector: esprit.echo.v1.Echo.Unary
    allow_without_credential: true
    requirements:
    - provider_id: p
"#;
        let descriptor =
            service_config::Descriptor::from_file_descriptor_set(echo::FILE_DESCRIPTOR_SET)
                .unwrap();
        let config = service_config::from_yaml(yaml, descriptor).unwrap();
        let policy = authn::AuthPolicy::from_config(&config)
            .method("/esprit.echo.v1.Echo/Unary")
            .unwrap()
            .clone();
        let authenticator = Arc::new(
            Authenticator::start(&config, &AuthSettings::default(), clock::system(), None).unwrap(),
        );
        JwtRequirement {
            policy,
            authenticator,
        }
    }

    fn parts(authorization: Option<&str>) -> http::request::Parts {
        let mut request = http::Request::post("/esprit.echo.v1.Echo/Unary");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn the_step_allows_no_token_and_refuses_a_malformed_one() {
        let jwt = requirement().await;
        let mut allowed = parts(None);
        jwt.check(&mut allowed).await.unwrap();
        assert!(allowed.headers.get("x-endpoint-api-userinfo").is_none());

        let mut junk = parts(Some("Bearer junk"));
        match jwt.check(&mut junk).await {
            Err(Rejection::Auth(authn::AuthError::Malformed(_))) => {}
            other => panic!("{other:?}"),
        }
        assert!(junk.headers.get("x-endpoint-api-userinfo").is_none());
    }

    /// An entry is used until its lifetime has passed by the injected clock, whatever moka's
    /// own (much longer here) time-to-live says; then it is gone.
    #[test]
    fn a_verified_entry_expires_by_the_injected_clock() {
        let settings = AuthSettings::default();
        let cache = verified_cache::<u8>(&settings);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let lifetime = Duration::from_secs(300);
        let at = |now: SystemTime| Verified {
            cache: &cache,
            now,
            lifetime,
            metrics: None,
        };
        at(start).store("token", 7);
        assert_eq!(at(start).lookup("token"), Some(7));
        let almost = start + lifetime - Duration::from_millis(1);
        assert_eq!(at(almost).lookup("token"), Some(7));
        assert_eq!(at(start + lifetime).lookup("token"), None);
        // Dropped, not merely hidden: an earlier clock does not bring it back.
        assert_eq!(at(start).lookup("token"), None);
    }

    #[test]
    fn the_default_fits_ten_thousand_ordinary_tokens() {
        let settings = AuthSettings::default();
        let floor = settings.jwt_cache_bytes / settings.jwt_cache_size;
        assert!(u64::from(verified_weight(1000)) <= floor);
    }
}
