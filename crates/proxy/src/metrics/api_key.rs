//! The API-key families: cache hits and misses, the key servers' latency, and each key
//! server's attempts and ejections.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Key-server check latency, in seconds.
const KEY_SERVER_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AttemptLabels {
    replica: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReplicaLabel {
    replica: String,
}

/// The API-key checker's counters.
#[derive(Clone, Debug)]
pub(crate) struct ApiKeyMetrics {
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub latency: Histogram,
    pub(super) attempts: Family<AttemptLabels, Counter>,
    pub(super) ejections: Family<ReplicaLabel, Counter>,
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
    pub(super) fn new() -> Self {
        Self {
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            latency: Histogram::new(KEY_SERVER_BUCKETS),
            attempts: Family::default(),
            ejections: Family::default(),
        }
    }

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
}
