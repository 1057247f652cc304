//! What the caller passes in: key sets, the verified-token cache, the time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use jose::{Jwt, KeySet, UnixTime};
use service_config::ProviderId;

/// ESP's default clock skew for `exp` and `nbf`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// The state of one provider's key set, as the caller's fetcher knows it. Owned (an `Arc`
/// clone is one atomic increment) so that a fetcher that swaps sets atomically (keysets'
/// `JwksCache::state`) can hand out its current set without a borrow.
#[derive(Clone, Debug)]
pub enum ProviderKeys {
    /// A key set to verify with.
    Ready(Arc<KeySet>),
    /// Never obtained, or stale beyond the allowed maximum. Tokens of this provider fail
    /// closed with "Jwks remote fetch is failed".
    NotFetched,
}

/// The key sets of the providers, looked up per request. The proxy implements it over its
/// fetcher (background refresh, last good set kept); tests and the CLI use the `HashMap` impl,
/// in which a provider without an entry is [`ProviderKeys::NotFetched`].
pub trait KeySets {
    /// The key set of `provider`.
    fn get(&self, provider: &ProviderId) -> ProviderKeys;
}

impl KeySets for HashMap<ProviderId, Arc<KeySet>> {
    fn get(&self, provider: &ProviderId) -> ProviderKeys {
        match HashMap::get(self, provider) {
            Some(set) => ProviderKeys::Ready(Arc::clone(set)),
            None => ProviderKeys::NotFetched,
        }
    }
}

/// A token whose signature was verified with the keys of `provider`.
///
/// Only its signature is vouched for: issuer, time and audience are checked again on every
/// request, because they depend on the method and on `now`.
#[derive(Debug)]
pub struct VerifiedToken {
    provider: ProviderId,
    jwt: Jwt,
    /// The payload segment as a header value, made once when the token is verified: a cache
    /// hit hands out a clone (a reference count) instead of copying and validating it per call.
    /// `None` never happens for a parsed token (base64url is always a valid header value).
    userinfo: Option<HeaderValue>,
}

impl VerifiedToken {
    pub(crate) fn new(provider: ProviderId, jwt: Jwt) -> VerifiedToken {
        let userinfo = HeaderValue::from_str(jwt.payload_segment()).ok();
        VerifiedToken {
            provider,
            jwt,
            userinfo,
        }
    }

    /// The payload segment as `X-Endpoint-API-UserInfo`'s value (ESPv2), shared by every call
    /// that presents this token.
    pub fn userinfo(&self) -> Option<&HeaderValue> {
        self.userinfo.as_ref()
    }

    /// The provider whose key set verified the signature.
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }

    /// The parsed token.
    pub fn jwt(&self) -> &Jwt {
        &self.jwt
    }
}

/// A cache of tokens whose signature verified, so a repeated token skips the signature check.
///
/// **Implementations must key entries by the full token string, or by a collision-resistant
/// digest of all of it such as SHA-256** (not a hash prefix, not the payload, not `sub`): a hit is taken as proof that exactly these bytes carry a valid
/// signature, so two different tokens must never share an entry. What a hit skips is only the
/// key lookup and the signature verification, and only when the cached entry was verified
/// with the same provider as the requirement being checked; parsing is skipped too because the
/// bytes are identical. Issuer, `exp`/`nbf` and audience are rechecked on every call, and the
/// provider's key set must still be [`ProviderKeys::Ready`].
///
/// A hit outlives key rotation (as in Envoy); bound the entries' lifetime (ESPv2 keeps 1000
/// entries) and clear the cache when a new config is loaded.
pub trait VerifiedTokens {
    /// The entry for exactly `token`, if any.
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>>;
    /// Records that `token` verified. Called only after every check passed.
    fn put(&self, token: &str, verified: Arc<VerifiedToken>);
}

/// No cache: every token's signature is verified.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

impl VerifiedTokens for NoCache {
    fn get(&self, _token: &str) -> Option<Arc<VerifiedToken>> {
        None
    }

    fn put(&self, _token: &str, _verified: Arc<VerifiedToken>) {}
}

/// Everything `authenticate` needs besides the policy and the request.
#[derive(Clone, Copy)]
pub struct AuthInputs<'a> {
    /// The providers' key sets.
    pub keys: &'a dyn KeySets,
    /// Verified tokens; [`NoCache`] for none.
    pub cache: &'a dyn VerifiedTokens,
    /// The time to check `exp` and `nbf` against (the caller reads the clock).
    pub now: UnixTime,
    /// Clock skew allowed either way; [`DEFAULT_SKEW`] is ESP's.
    pub skew: Duration,
}

impl std::fmt::Debug for AuthInputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthInputs")
            .field("now", &self.now)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}
