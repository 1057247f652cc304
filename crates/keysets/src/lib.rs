//! `keysets` (package `esprit-keysets`): fetches and caches each authentication provider's
//! public keys, the I/O edge between `service-config`'s providers and `jose`'s key sets.
//!
//! What it does: fetches a provider's key set from its `jwks_uri` (`http://`, `https://` with
//! the system roots plus an optional private CA, or `file://`), or by OpenID discovery when the
//! provider has no `jwks_uri`; hands the bytes to [`jose::KeySet::parse`] (JWKS, Google X.509
//! map or PEM; HMAC keys only from `file://`); keeps one lock-free snapshot per provider that
//! the proxy reads on every request ([`JwksCache::state`]); refreshes it in the background,
//! keeps the last good set through failed refreshes up to `max_stale`, and refetches on an
//! unknown `kid` ([`JwksCache::refetch`]: single-flight, once per `kid` per interval, and
//! at most `refetch_limit` per interval per provider). [`fetch_once`] is
//! the same fetch without a cache, for `esprit token inspect`.
//!
//! What it deliberately does not: verify tokens, know about issuers' claims or audiences
//! (that is `jose` and `authn`), follow redirects, use HTTP proxies, honour `Cache-Control`
//! (the refresh period is the configured `cache_duration`, as ESPv2's
//! `--jwks_cache_duration_in_s`), or log key material (kids only).
//!
//! The `testing` feature adds [`test_server`], a local key server over real sockets.

mod budget;
mod cache;
mod error;
mod fetch;
#[cfg(feature = "testing")]
pub mod test_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use cache::{JwksCache, ProviderStats};
pub use error::FetchError;
pub use fetch::{Fetcher, discovery_url, extra_roots, fetch_once};

/// How key sets are fetched and cached. [`JwksSettings::default`] has ESP's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSettings {
    /// How long a fetched set is fresh: refreshed in the background at 80% of it.
    /// Default 300 s (ESPv2 `--jwks_cache_duration_in_s`).
    pub cache_duration: Duration,
    /// How long past `cache_duration` the last good set is still used while refreshes fail;
    /// after that the provider is [`CachedKeySet::NotFetched`] (fail closed). Default 24 h.
    pub max_stale: Duration,
    /// A `kid` not in the key set triggers a refetch at most once per this interval (per
    /// provider and `kid`); also the period of the `refetch_limit` bucket. Default 30 s.
    pub refetch_interval: Duration,
    /// At most this many unknown-`kid` refetches per provider per `refetch_interval`, whatever
    /// the `kid`s (a token bucket: a burst of this many, then one per `interval / limit`).
    /// Default 5; 0 counts as 1.
    pub refetch_limit: u32,
    /// Bound on one GET (connect, headers and body). Default 5 s.
    pub fetch_timeout: Duration,
    /// Largest key set accepted, in bytes (HTTP body or file). Default 1 MiB.
    pub max_body_bytes: u64,
    /// PEM file of extra CA certificates trusted for `https` key servers, on top of the
    /// system roots (`--jwks-ca FILE`).
    pub extra_ca: Option<PathBuf>,
    /// First retry delay after a failed background fetch; doubles per failure. Default 1 s.
    pub retry_initial: Duration,
    /// Largest retry delay. Default 30 s.
    pub retry_max: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        JwksSettings {
            cache_duration: Duration::from_secs(300),
            max_stale: Duration::from_secs(24 * 60 * 60),
            refetch_interval: Duration::from_secs(30),
            refetch_limit: 5,
            fetch_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            extra_ca: None,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

impl JwksSettings {
    /// When a background refresh is due after a good fetch: 80% of `cache_duration`, so the
    /// new set normally arrives before the old one expires.
    pub fn refresh_after(&self) -> Duration {
        self.cache_duration.mul_f64(0.8)
    }

    /// How long after a good fetch its set may be used: `cache_duration + max_stale`.
    pub fn usable_for(&self) -> Duration {
        self.cache_duration.saturating_add(self.max_stale)
    }
}

/// What the proxy may verify a provider's tokens with, now.
#[derive(Clone, Debug)]
pub enum CachedKeySet {
    /// A usable key set (fresh, or stale within `max_stale`).
    Ready(Arc<jose::KeySet>),
    /// No usable set: not fetched yet, every fetch failed, or the last good set is past
    /// `max_stale`. Reject with ESP's "Jwks remote fetch is failed". `last_error` is for logs.
    NotFetched {
        /// Why, when known.
        last_error: Option<String>,
    },
}

/// What [`JwksCache::refetch`] did. Whatever it says, read [`JwksCache::state`] again
/// afterwards: it holds the newest usable set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refetch {
    /// This call fetched successfully.
    Fetched,
    /// Another fetch (a refetch or a background refresh) finished while this call waited;
    /// its result is in the state.
    Joined,
    /// A refetch for this `kid` already ran within `refetch_interval`; nothing was fetched.
    RateLimited,
    /// The provider's `refetch_limit` refetches per `refetch_interval` are spent; nothing was
    /// fetched.
    BudgetExhausted,
    /// This call fetched and failed; the last good set, if any, is kept.
    Failed {
        /// The error, for logs.
        error: String,
    },
    /// No provider with that id is configured.
    UnknownProvider,
}
