//! The JWT families: authentication outcomes by provider and check, the verified-token cache,
//! and unknown-`kid` refetches.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use service_config::ProviderId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuthLabels {
    provider: Arc<str>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefetchLabels {
    provider: String,
    outcome: &'static str,
}

/// The JWT families, registered once; each route table resolves its [`AuthMetrics`].
#[derive(Clone, Default)]
pub(super) struct AuthFamilies {
    pub auth: Family<AuthLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub refetches: Family<RefetchLabels, Counter>,
}

/// The label of failures no provider is known for (no token, a malformed one, an unknown
/// issuer), and of any provider id not in the config (none can be: bounded either way).
const NO_PROVIDER: &str = "none";

impl AuthFamilies {
    /// The JWT counters, one series per provider of the config and result, created at 0.
    pub(super) fn resolve(&self, providers: &[service_config::AuthProvider]) -> AuthMetrics {
        let results = |provider: &str| -> AuthCounters {
            let provider: Arc<str> = Arc::from(provider);
            let counter = |result: &'static str| {
                self.auth.get_or_create_owned(&AuthLabels {
                    provider: provider.clone(),
                    result,
                })
            };
            AuthCounters {
                allowed: counter("allowed"),
                failed: authn::Stage::ALL.map(|stage| counter(stage.name())),
            }
        };
        AuthMetrics {
            by_provider: providers
                .iter()
                .map(|p| (p.id.clone(), results(p.id.as_str())))
                .collect(),
            none: results(NO_PROVIDER),
            cache_hits: self.cache_hits.clone(),
            cache_misses: self.cache_misses.clone(),
            refetches: self.refetches.clone(),
        }
    }
}

struct AuthCounters {
    allowed: Counter,
    failed: [Counter; 8],
}

/// The JWT step's counters, resolved per provider of the config in force.
pub(crate) struct AuthMetrics {
    by_provider: HashMap<ProviderId, AuthCounters>,
    none: AuthCounters,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    refetches: Family<RefetchLabels, Counter>,
}

impl AuthMetrics {
    fn counters(&self, provider: Option<&ProviderId>) -> &AuthCounters {
        provider
            .and_then(|p| self.by_provider.get(p))
            .unwrap_or(&self.none)
    }

    pub(crate) fn allowed(&self, provider: Option<&ProviderId>) {
        self.counters(provider).allowed.inc();
    }

    /// A rejection, under the provider the error names ([`authn::AuthError::provider`]: the
    /// one whose issuer the token named, for every check after the issuer's).
    pub(crate) fn failed(&self, err: &authn::AuthError) {
        let stage = err.stage();
        let i = authn::Stage::ALL
            .iter()
            .position(|s| *s == stage)
            .unwrap_or(0);
        if let Some(counter) = self.counters(err.provider()).failed.get(i) {
            counter.inc();
        }
    }

    /// An unknown-kid refetch and what it did (a rare path: labels are built here).
    pub(crate) fn refetched(&self, provider: &ProviderId, outcome: &keysets::Refetch) {
        let outcome = match outcome {
            keysets::Refetch::Fetched => "fetched",
            keysets::Refetch::Joined => "joined",
            keysets::Refetch::RateLimited => "rate_limited",
            keysets::Refetch::BudgetExhausted => "budget_exhausted",
            keysets::Refetch::Failed { .. } => "failed",
            keysets::Refetch::UnknownProvider => "unknown_provider",
        };
        self.refetches
            .get_or_create(&RefetchLabels {
                provider: provider.as_str().to_owned(),
                outcome,
            })
            .inc();
    }
}
