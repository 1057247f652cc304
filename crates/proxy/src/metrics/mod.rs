//! The proxy's Prometheus metrics (`--admin-listen`). Registered once at start-up; what a call
//! touches is resolved per route when the route table is built, so recording a call is a few
//! atomic operations: no label formatting, no allocation, no lock shared by every call (each
//! route's duration histogram has its own short mutex, inside `prometheus-client`).
//!
//! Label values are bounded: method selectors from the config (plus `undefined` for every path
//! that is not a method), the 17 gRPC codes, a fixed list of HTTP statuses (plus `other`),
//! provider ids from the config, the key servers' `host:port` from `--service-control-url`, and
//! the fixed names of checks and outcomes. Nothing a client chose becomes a label.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use service_config::ProviderId;
use tonic::Code;

use crate::wire::code_name;

/// The method label of calls to paths that are not methods of the API.
pub(crate) const UNDEFINED_METHOD: &str = "undefined";

/// HTTP statuses kept as themselves; any other is `other`.
const STATUSES: [(u16, &str); 14] = [
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (415, "415"),
    (429, "429"),
    (500, "500"),
    (501, "501"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];
const N_STATUS: usize = STATUSES.len() + 1;
const N_CODES: usize = 17;

/// Call durations, in seconds: 0.5 ms to 60 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Key-server check latency, in seconds.
const KEY_SERVER_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|(s, _)| *s == status)
        .unwrap_or(STATUSES.len())
}

fn status_label(index: usize) -> &'static str {
    STATUSES.get(index).map_or("other", |(_, label)| label)
}

fn code_index(code: Code) -> usize {
    usize::try_from(code as i32).map_or(2, |i| i.min(N_CODES - 1))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: Arc<str>,
    grpc_code: &'static str,
    http_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    provider: Arc<str>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefetchLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    replica: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

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
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabel, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    auth: Family<AuthLabels, Counter>,
    jwt_cache_hits: Counter,
    jwt_cache_misses: Counter,
    refetches: Family<RefetchLabels, Counter>,
    api_key_checks: Family<OutcomeLabel, Counter>,
    api_key: ApiKeyMetrics,
    pub backend_connect_failures: Counter,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl ProxyMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            config_reloads: Family::default(),
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            auth: Family::default(),
            jwt_cache_hits: Counter::default(),
            jwt_cache_misses: Counter::default(),
            refetches: Family::default(),
            api_key_checks: Family::default(),
            api_key: ApiKeyMetrics {
                cache_hits: Counter::default(),
                cache_misses: Counter::default(),
                latency: Histogram::new(KEY_SERVER_BUCKETS),
                attempts: Family::default(),
                ejections: Family::default(),
            },
            backend_connect_failures: Counter::default(),
        };
        registry.register(
            "esprit_calls",
            "Calls answered, by method selector (\"undefined\" for paths that are not methods), gRPC code and HTTP status",
            metrics.calls.clone(),
        );
        registry.register(
            "esprit_call_duration_seconds",
            "Call durations from the request's arrival to the end of the response, by method selector",
            metrics.durations.clone(),
        );
        registry.register(
            "esprit_calls_in_flight",
            "Calls received and not yet finished",
            metrics.in_flight.clone(),
        );
        registry.register(
            "esprit_jwt_authentications",
            "JWT checks by provider (\"none\" when no provider is concerned) and result: allowed, or the check that failed",
            metrics.auth.clone(),
        );
        registry.register(
            "esprit_jwt_cache_hits",
            "Tokens found in the verified-token cache (signature not checked again)",
            metrics.jwt_cache_hits.clone(),
        );
        registry.register(
            "esprit_jwt_cache_misses",
            "Tokens not in the verified-token cache",
            metrics.jwt_cache_misses.clone(),
        );
        registry.register(
            "esprit_jwks_unknown_kid_refetches",
            "Key-set refetches asked for by a token whose kid was unknown, by provider and outcome",
            metrics.refetches.clone(),
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
        let method: Arc<str> = Arc::from(method);
        let duration = self.durations.get_or_create_owned(&MethodLabel {
            method: method.clone(),
        });
        Arc::new(MethodMetrics {
            method,
            calls: self.calls.clone(),
            cells: (0..N_CODES * N_STATUS).map(|_| OnceLock::new()).collect(),
            duration,
            in_flight: self.in_flight.clone(),
            api_key_checks: self.api_key_checks.clone(),
        })
    }

    /// The JWT counters, one series per provider of the config and result, created at 0.
    pub(crate) fn auth(&self, providers: &[service_config::AuthProvider]) -> AuthMetrics {
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
            none: results("none"),
            cache_hits: self.jwt_cache_hits.clone(),
            cache_misses: self.jwt_cache_misses.clone(),
            refetches: self.refetches.clone(),
        }
    }

    pub(crate) fn api_key(&self) -> ApiKeyMetrics {
        self.api_key.clone()
    }
}

/// What one call of one method records. Built once per route; the series of each (gRPC code,
/// HTTP status) pair is created on its first use and then reached by index.
pub(crate) struct MethodMetrics {
    method: Arc<str>,
    calls: Family<CallLabels, Counter>,
    cells: Box<[OnceLock<Counter>]>,
    duration: Histogram,
    in_flight: Gauge,
    api_key_checks: Family<OutcomeLabel, Counter>,
}

impl std::fmt::Debug for MethodMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodMetrics")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl MethodMetrics {
    pub(crate) fn started(&self) {
        self.in_flight.inc();
    }

    /// The call is over (with `code`, or `CANCELLED` when it ended before a status).
    pub(crate) fn finished(&self, code: Code, http_status: u16, elapsed: Duration) {
        self.in_flight.dec();
        let (c, s) = (code_index(code), status_index(http_status));
        if let Some(cell) = self.cells.get(c * N_STATUS + s) {
            cell.get_or_init(|| {
                self.calls.get_or_create_owned(&CallLabels {
                    method: self.method.clone(),
                    grpc_code: code_name(code),
                    http_status: status_label(s),
                })
            })
            .inc();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// An API-key decision's outcome (`valid`, `invalid`, `missing`…, a fixed set).
    pub(crate) fn api_key_outcome(&self, outcome: &'static str) {
        self.api_key_checks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

struct AuthCounters {
    allowed: Counter,
    failed: [Counter; 8],
}

/// The JWT step's counters, resolved per provider at start-up.
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

/// The API-key checker's counters.
#[derive(Clone, Debug)]
pub(crate) struct ApiKeyMetrics {
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub latency: Histogram,
    attempts: Family<AttemptLabels, Counter>,
    ejections: Family<ReplicaLabel, Counter>,
}

/// How one request to one key server ended (the `outcome` label of
/// `esprit_api_key_server_attempts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    Answered,
    Refused,
    ConnectError,
    Timeout,
    ServerError,
    TransportError,
}

impl AttemptOutcome {
    const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Answered,
        AttemptOutcome::Refused,
        AttemptOutcome::ConnectError,
        AttemptOutcome::Timeout,
        AttemptOutcome::ServerError,
        AttemptOutcome::TransportError,
    ];

    fn label(self) -> &'static str {
        match self {
            AttemptOutcome::Answered => "answered",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::ConnectError => "connect_error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::ServerError => "server_error",
            AttemptOutcome::TransportError => "transport_error",
        }
    }
}

/// One key server's counters, every series created at 0 when the checker is built.
#[derive(Clone, Debug)]
pub(crate) struct ReplicaMetrics {
    attempts: [Counter; 6],
    ejections: Counter,
}

impl ReplicaMetrics {
    pub(crate) fn attempted(&self, outcome: AttemptOutcome) {
        if let Some(counter) = self.attempts.get(outcome as usize) {
            counter.inc();
        }
    }

    pub(crate) fn ejected(&self) {
        self.ejections.inc();
    }
}

impl ApiKeyMetrics {
    /// The counters of the key server labelled `replica` (`host:port`).
    pub(crate) fn replica(&self, replica: &str) -> ReplicaMetrics {
        ReplicaMetrics {
            attempts: AttemptOutcome::ALL.map(|outcome| {
                self.attempts.get_or_create_owned(&AttemptLabels {
                    replica: replica.to_owned(),
                    outcome: outcome.label(),
                })
            }),
            ejections: self.ejections.get_or_create_owned(&ReplicaLabel {
                replica: replica.to_owned(),
            }),
        }
    }

    pub(crate) fn hit(metrics: Option<&Self>) {
        if let Some(m) = metrics {
            m.cache_hits.inc();
        }
    }

    pub(crate) fn miss(metrics: Option<&Self>) {
        if let Some(m) = metrics {
            m.cache_misses.inc();
        }
    }

    pub(crate) fn asked(metrics: Option<&Self>, took: Duration) {
        if let Some(m) = metrics {
            m.latency.observe(took.as_secs_f64());
        }
    }
}

/// What is read at scrape time rather than counted on the way: connections open, each
/// provider's key-set fetches, and the key servers ejected now.
pub(crate) struct ScrapeCollector {
    pub admission: Arc<conn_guard::Admission>,
    /// The key sets are those of the route table in force (a reload replaces them).
    pub state: Arc<crate::handler::State>,
}

impl std::fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for ScrapeCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let open = ConstGauge::new(i64::try_from(self.admission.open()).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "esprit_connections_open",
            "Client connections open on the data listener",
            None,
            open.metric_type(),
        )?)?;
        let routes = self.state.routes.load();
        if let Some(checker) = routes.api_key_checker() {
            // An ejection ends with time, not with an event: counted when scraped.
            let ejected = ConstGauge::new(i64::try_from(checker.ejected_replicas()).unwrap_or(0));
            ejected.encode(encoder.encode_descriptor(
                "esprit_api_key_servers_ejected",
                "Key servers (--service-control-url) ejected now after consecutive failed attempts",
                None,
                ejected.metric_type(),
            )?)?;
        }
        let Some(keys) = &routes.keys else {
            return Ok(());
        };
        let stats = keys.stats();
        type Reading = fn(&keysets::ProviderStats) -> Option<f64>;
        let series: [(&str, &str, bool, Reading); 4] = [
            (
                "esprit_jwks_fetches",
                "Key-set fetch attempts (background refreshes and refetches), by provider",
                true,
                |s| Some(s.fetches as f64),
            ),
            (
                "esprit_jwks_fetch_failures",
                "Key-set fetches that failed, by provider",
                true,
                |s| Some(s.failures as f64),
            ),
            (
                "esprit_jwks_last_success_timestamp_seconds",
                "When each provider's key set was last fetched successfully (Unix time; absent before the first)",
                false,
                |s| s.last_success_unix.map(|t| t as f64),
            ),
            (
                "esprit_jwks_keys",
                "Keys in each provider's last good key set",
                false,
                |s| Some(s.keys as f64),
            ),
        ];
        for (name, help, counter, read) in series {
            let metric_type = if counter {
                prometheus_client::metrics::MetricType::Counter
            } else {
                prometheus_client::metrics::MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for s in &stats {
                let Some(value) = read(s) else { continue };
                let labels = [("provider", s.provider.as_str())];
                let metric = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value as u64).encode(metric)?;
                } else {
                    ConstGauge::new(value).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_outcomes_index_their_counters_and_have_distinct_labels() {
        for (i, outcome) in AttemptOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        let mut labels: Vec<&str> = AttemptOutcome::ALL.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), AttemptOutcome::ALL.len());
    }

    #[test]
    fn every_code_and_status_has_a_cell() {
        assert_eq!(code_index(Code::Ok), 0);
        assert_eq!(code_index(Code::Unauthenticated), 16);
        assert_eq!(status_label(status_index(404)), "404");
        assert_eq!(status_label(status_index(299)), "other");
        assert!(
            code_index(Code::Unauthenticated) * N_STATUS + status_index(1) < N_CODES * N_STATUS
        );
    }
}
