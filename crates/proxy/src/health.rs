//! Readiness: the backend's gRPC health (polled, ESPv2's `--health_check_grpc_backend`), the
//! key sets fetched once, and the listener serving. `/readyz` on the admin listener runs
//! [`ProxyReadiness`]; the `--healthz` path on the data listener reports the backend's health
//! too, as ESPv2's does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use admin::Check;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::ProxyError;
use crate::handler::State;
use crate::settings::{BackendHealthCheck, ProxySettings};

/// The longest a single health check may take, whatever the interval.
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The last health check's verdict: `None` while healthy, else why not.
#[derive(Debug)]
pub(crate) struct BackendHealth {
    unhealthy: Mutex<Option<String>>,
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self {
            unhealthy: Mutex::new(Some("not checked yet".into())),
        }
    }
}

impl BackendHealth {
    pub(crate) fn problem(&self) -> Option<String> {
        self.unhealthy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.problem().is_none()
    }

    fn set(&self, problem: Option<String>) {
        let mut current = self
            .unhealthy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.is_none() != problem.is_none() {
            match &problem {
                None => tracing::info!("backend health check: SERVING"),
                Some(why) => tracing::warn!(problem = %why, "backend health check failed"),
            }
        }
        *current = problem;
    }
}

/// What a health answer means: `None` (healthy) only for `SERVING`.
pub(crate) fn verdict(answer: Result<ServingStatus, String>) -> Option<String> {
    match answer {
        Ok(ServingStatus::Serving) => None,
        Ok(other) => Some(format!("backend reports {}", other.as_str_name())),
        Err(err) => Some(err),
    }
}

/// The poller's channel to the backend: its own connection, so health checks neither wait for
/// nor count against calls.
pub(crate) fn health_endpoint(settings: &ProxySettings) -> Result<Endpoint, ProxyError> {
    let backend = &settings.backend;
    let scheme = if backend.tls { "https" } else { "http" };
    let check = settings.backend_health.clone().unwrap_or_default();
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", backend.authority))
        .map_err(|e| ProxyError::HealthCheck(e.to_string()))?
        .connect_timeout(settings.backend_connect_timeout)
        .timeout(check.interval.min(MAX_CHECK_TIMEOUT));
    if backend.tls {
        let mut tls = ClientTlsConfig::new().domain_name(backend.authority.host());
        tls = match &settings.backend_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ProxyError::ReadFile {
                    what: "backend CA",
                    path: path.clone(),
                    source,
                })?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ProxyError::HealthCheck(e.to_string()))?;
    }
    Ok(endpoint)
}

/// Checks the backend every `interval` until dropped (the task is aborted with the proxy).
pub(crate) async fn poll(
    endpoint: Endpoint,
    check: BackendHealthCheck,
    health: Arc<BackendHealth>,
) {
    let mut client = HealthClient::new(endpoint.connect_lazy());
    let interval = check.interval.max(Duration::from_millis(10));
    loop {
        let request = HealthCheckRequest {
            service: check.service.clone(),
        };
        let answer = match client.check(request).await {
            Ok(response) => Ok(response.into_inner().status()),
            Err(status) => Err(format!(
                "health check failed: {:?}: {}",
                status.code(),
                status.message()
            )),
        };
        health.set(verdict(answer));
        tokio::time::sleep(interval).await;
    }
}

/// `/readyz`'s checks for the proxy.
pub(crate) struct ProxyReadiness {
    pub state: Arc<State>,
    pub accepting: Arc<AtomicBool>,
    pub require_keys: bool,
    /// Set the first time every provider's keys were found fetched: from then on the keys
    /// check passes, so a reload that adds a provider (or changes one's `jwks_uri`) does not
    /// make a serving proxy unready; the new provider's calls refetch on demand and fail
    /// closed until its keys come.
    pub keys_ready_once: AtomicBool,
}

impl ProxyReadiness {
    /// The keys check: which providers' key sets were never fetched, until every one has been
    /// once (then always passes).
    fn keys_check(&self) -> Option<Check> {
        if !self.require_keys {
            return None;
        }
        if self.keys_ready_once.load(Ordering::Relaxed) {
            return Some(Check::pass("keys"));
        }
        let routes = self.state.routes.load();
        let missing = routes
            .keys
            .as_ref()
            .map(|keys| keys.never_fetched())
            .unwrap_or_default();
        Some(if missing.is_empty() {
            self.keys_ready_once.store(true, Ordering::Relaxed);
            Check::pass("keys")
        } else {
            let ids: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
            Check::fail(
                "keys",
                format!("key sets never fetched for providers: {}", ids.join(", ")),
            )
        })
    }
}

impl admin::Readiness for ProxyReadiness {
    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::with_capacity(3);
        checks.push(if self.state.draining.load(Ordering::Relaxed) {
            Check::fail("listener", "draining")
        } else if !self.accepting.load(Ordering::Relaxed) {
            Check::fail("listener", "not serving yet")
        } else {
            Check::pass("listener")
        });
        checks.extend(self.keys_check());
        if let Some(health) = &self.state.backend_health {
            checks.push(match health.problem() {
                None => Check::pass("backend"),
                Some(why) => Check::fail("backend", why),
            });
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_serving_is_healthy() {
        assert_eq!(verdict(Ok(ServingStatus::Serving)), None);
        for status in [
            ServingStatus::NotServing,
            ServingStatus::Unknown,
            ServingStatus::ServiceUnknown,
        ] {
            assert!(verdict(Ok(status)).is_some(), "{status:?}");
        }
        assert_eq!(verdict(Err("down".into())), Some("down".into()));
    }
}
