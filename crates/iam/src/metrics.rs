//! The key server's Prometheus metrics (`esprit iam serve --admin-listen`): requests by route
//! and HTTP status, and their durations by route. Route labels are the fixed names of
//! [`route_label`], never a path a client sent.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::server::Route;

/// Request durations, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

/// The label of a route: one fixed name per kind of endpoint.
pub(crate) fn route_label(route: &Route) -> &'static str {
    match route {
        Route::X509(_) => "x509",
        Route::Jwks(_) => "jwks",
        Route::ServiceCheck(_) => "api_key_check",
        Route::Discovery => "discovery",
        Route::TokenJwks => "token_jwks",
        Route::TokenX509 => "token_x509",
        Route::Token => "token",
        Route::IamCredentials(_) => "iam_credentials",
        Route::MethodNotAllowed(_) => "method_not_allowed",
        Route::NotFound => "not_found",
    }
}

/// Registered once; shared by every connection of the key server.
#[derive(Debug)]
pub struct IamMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl IamMetrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(histogram as fn() -> Histogram),
        };
        registry.register(
            "esprit_iam_requests",
            "Key-server requests by route (x509, jwks, api_key_check, discovery, token_jwks, token_x509, token, iam_credentials, method_not_allowed, not_found) and HTTP status",
            metrics.requests.clone(),
        );
        registry.register(
            "esprit_iam_request_duration_seconds",
            "Key-server request durations by route",
            metrics.durations.clone(),
        );
        Arc::new(metrics)
    }

    pub(crate) fn record(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.durations
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }
}
