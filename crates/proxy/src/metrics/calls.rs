//! The call families: calls by method, gRPC code and HTTP status, their durations, and the
//! calls in flight. A route resolves its [`MethodMetrics`] once; a call then touches a few
//! atomics reached by index.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tonic::Code;

use super::OutcomeLabel;
use crate::wire::code_name;

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
pub(super) struct CallLabels {
    method: Arc<str>,
    grpc_code: &'static str,
    http_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabel {
    method: Arc<str>,
}

/// The call families, shared by every route's [`MethodMetrics`].
#[derive(Clone)]
pub(super) struct CallFamilies {
    pub calls: Family<CallLabels, Counter>,
    pub durations: Family<MethodLabel, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl CallFamilies {
    pub(super) fn new() -> Self {
        Self {
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
        }
    }

    /// The per-call handles of `method`.
    pub(super) fn method(
        &self,
        method: &str,
        api_key_checks: &Family<OutcomeLabel, Counter>,
    ) -> MethodMetrics {
        let method: Arc<str> = Arc::from(method);
        let duration = self.durations.get_or_create_owned(&MethodLabel {
            method: method.clone(),
        });
        MethodMetrics {
            method,
            calls: self.calls.clone(),
            cells: (0..N_CODES * N_STATUS).map(|_| OnceLock::new()).collect(),
            duration,
            in_flight: self.in_flight.clone(),
            api_key_checks: api_key_checks.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
