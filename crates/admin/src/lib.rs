//! `admin` (package `esprit-admin`): the admin listener of `esprit proxy` and `esprit iam serve`,
//! on its own address, apart from the data listener: `/metrics` (Prometheus text format 0.0.4,
//! encoded by `prometheus-client`), `/healthz` (alive), `/readyz` (the server's readiness
//! checks) and `/config` (the active configuration's id, sources and load time, as JSON).
//!
//! What it deliberately does not do: decide readiness itself (each server passes its checks as
//! a [`Readiness`]), or serve anything but these four `GET` paths. Metrics are registered by the
//! servers; this crate adds the process metrics ([`process`]) and the active-config metrics.

mod config;
pub mod process;
mod server;

pub use config::{ActiveConfig, ConfigInfo};
pub use prometheus_client;
pub use server::{AdminServer, AdminState};

/// The admin listener's connection limits: a scraper or two, a probe, an operator.
pub const LIMITS: conn_guard::ConnectionLimits = conn_guard::ConnectionLimits {
    max_connections: 64,
    max_connections_per_peer: 16,
    request_header_timeout: std::time::Duration::from_secs(10),
    idle_timeout: std::time::Duration::from_secs(300),
    premature_reset_total_stream_count: 500,
    premature_reset_min_stream_lifetime: std::time::Duration::from_secs(1),
};

/// A readiness that only says the server is up (it answers, so it is).
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn checks(&self) -> Vec<Check> {
        vec![Check::pass("listener")]
    }
}

/// One readiness check's result: its name, and why it is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    /// `None` when passing; else what is missing, for the `/readyz` body (never a secret).
    pub failing: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str) -> Self {
        Self {
            name,
            failing: None,
        }
    }

    pub fn fail(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            name,
            failing: Some(why.into()),
        }
    }
}

/// The checks `/readyz` runs on each request; ready when all pass.
pub trait Readiness: Send + Sync + 'static {
    fn checks(&self) -> Vec<Check>;
}

/// Failures while starting the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("binding the admin listener on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `--admin-listen`'s value: `HOST:PORT`, or a bare `PORT` meaning `127.0.0.1:PORT` (the admin
/// pages are for the operator's scraper, not the world, unless asked).
pub fn parse_admin_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("{text:?}: expected PORT or HOST:PORT (an IP address and a port)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn admin_listen_values() {
        assert_eq!(
            parse_admin_listen("9901").unwrap().to_string(),
            "127.0.0.1:9901"
        );
        assert_eq!(
            parse_admin_listen("0.0.0.0:9901").unwrap().to_string(),
            "0.0.0.0:9901"
        );
        assert_eq!(
            parse_admin_listen("[::1]:1").unwrap().to_string(),
            "[::1]:1"
        );
        for bad in ["", "localhost:1", "99999", "1.2.3.4", ":80"] {
            assert!(parse_admin_listen(bad).is_err(), "{bad}");
        }
    }
}
