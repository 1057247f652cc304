//! The proxy's Prometheus metrics (`--admin-listen`). Registered once at start-up; what a call
//! touches is resolved per route when the route table is built, so recording a call is a few
//! atomic operations: no label formatting, no allocation, no lock shared by every call (each
//! route's duration histogram has its own short mutex, inside `prometheus-client`).
//!
//! Label values are bounded: method selectors from the config (plus `undefined` for every path
//! that is not a method), the 17 gRPC codes, a fixed list of HTTP statuses (plus `other`),
//! provider ids from the config, the key servers' `host:port` from `--service-control-url`, and
//! the fixed names of checks and outcomes. Nothing a client chose becomes a label.
//!
//! By concern: [`calls`] (calls, durations, in flight), [`auth`] (JWT outcomes, the
//! verified-token cache, refetches), [`api_key`] (API-key checks and key servers), [`scrape`]
//! (what is read at scrape time: connections, key sets, ejected key servers).

mod api_key;
mod auth;
mod calls;
mod scrape;

use std::sync::Arc;

pub(crate) use api_key::{ApiKeyMetrics, AttemptOutcome, ReplicaMetrics};
pub(crate) use auth::AuthMetrics;
pub(crate) use calls::MethodMetrics;
pub(crate) use scrape::ScrapeCollector;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The method label of calls to paths that are not methods of the API.
pub(crate) const UNDEFINED_METHOD: &str = "undefined";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How a configuration reload ended (`esprit_config_reloads_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReloadOutcome {
    Success,
    Failure,
}

impl ReloadOutcome {
    const ALL: [ReloadOutcome; 2] = [ReloadOutcome::Success, ReloadOutcome::Failure];

    fn label(self) -> &'static str {
        match self {
            ReloadOutcome::Success => "success",
            ReloadOutcome::Failure => "failure",
        }
    }
}

/// Every metric the proxy records, registered in the admin listener's registry.
pub(crate) struct ProxyMetrics {
    config_reloads: Family<OutcomeLabel, Counter>,
    calls: calls::CallFamilies,
    auth: auth::AuthFamilies,
    api_key_checks: Family<OutcomeLabel, Counter>,
    api_key: ApiKeyMetrics,
    pub backend_connect_failures: Counter,
}

impl ProxyMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            config_reloads: Family::default(),
            calls: calls::CallFamilies::new(),
            auth: auth::AuthFamilies::default(),
            api_key_checks: Family::default(),
            api_key: ApiKeyMetrics::new(),
            backend_connect_failures: Counter::default(),
        };
        registry.register(
            "esprit_calls",
            "Calls answered, by method selector (\"undefined\" for paths that are not methods), gRPC code and HTTP status",
            metrics.calls.calls.clone(),
        );
        registry.register(
            "esprit_call_duration_seconds",
            "Call durations from the request's arrival to the end of the response, by method selector",
            metrics.calls.durations.clone(),
        );
        registry.register(
            "esprit_calls_in_flight",
            "Calls received and not yet finished",
            metrics.calls.in_flight.clone(),
        );
        registry.register(
            "esprit_jwt_authentications",
            "JWT checks by provider (the one whose issuer the token named; \"none\" before one is known) and result: allowed, or the check that failed",
            metrics.auth.auth.clone(),
        );
        registry.register(
            "esprit_jwt_cache_hits",
            "Tokens found in the verified-token cache (signature not checked again)",
            metrics.auth.cache_hits.clone(),
        );
        registry.register(
            "esprit_jwt_cache_misses",
            "Tokens not in the verified-token cache",
            metrics.auth.cache_misses.clone(),
        );
        registry.register(
            "esprit_jwks_unknown_kid_refetches",
            "Key-set refetches asked for by a token whose kid was unknown, by provider and outcome",
            metrics.auth.refetches.clone(),
        );
        registry.register(
            "esprit_api_key_checks",
            "API-key checks by outcome",
            metrics.api_key_checks.clone(),
        );
        registry.register(
            "esprit_api_key_cache_hits",
            "API keys answered from the proxy's caches",
            metrics.api_key.cache_hits.clone(),
        );
        registry.register(
            "esprit_api_key_cache_misses",
            "API keys not in the proxy's caches (asked of the key server, or refused when too many checks are outstanding)",
            metrics.api_key.cache_misses.clone(),
        );
        registry.register(
            "esprit_api_key_server_duration_seconds",
            "Latency of the key server's answers to API-key checks",
            metrics.api_key.latency.clone(),
        );
        registry.register(
            "esprit_api_key_server_attempts",
            "Requests to each key server (--service-control-url host:port) by outcome: answered, refused (4xx), connect_error, timeout, server_error (5xx), transport_error",
            metrics.api_key.attempts.clone(),
        );
        registry.register(
            "esprit_api_key_server_ejections",
            "Times each key server was ejected after consecutive failed attempts",
            metrics.api_key.ejections.clone(),
        );
        registry.register(
            "esprit_backend_connect_failures",
            "Calls that failed because no connection to the backend could be made",
            metrics.backend_connect_failures.clone(),
        );
        registry.register(
            "esprit_config_reloads",
            "Configuration reloads (SIGHUP, --watch-config) by outcome: success, or failure (the configuration in force kept serving)",
            metrics.config_reloads.clone(),
        );
        // Both series exist from the start, so an alert on failures sees 0 before the first.
        for outcome in ReloadOutcome::ALL {
            drop(metrics.config_reloads.get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            }));
        }
        Arc::new(metrics)
    }

    /// A reload ended with `outcome`.
    pub(crate) fn config_reloaded(&self, outcome: ReloadOutcome) {
        self.config_reloads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The per-call handles of one method (or of [`UNDEFINED_METHOD`]).
    pub(crate) fn method(&self, method: &str) -> Arc<MethodMetrics> {
        Arc::new(self.calls.method(method, &self.api_key_checks))
    }

    /// The JWT counters, one series per provider of the config and result, created at 0.
    pub(crate) fn auth(&self, providers: &[service_config::AuthProvider]) -> AuthMetrics {
        self.auth.resolve(providers)
    }

    pub(crate) fn api_key(&self) -> ApiKeyMetrics {
        self.api_key.clone()
    }
}
