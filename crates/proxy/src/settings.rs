//! What the proxy is told on its command line, as typed values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::Proxy`] needs besides the service configuration.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    pub backend: BackendUrl,
    /// CA bundle (PEM) trusted for a `grpcs://` backend; `None` means the system roots.
    pub backend_ca: Option<PathBuf>,
    /// How long to wait for a TCP (and TLS) connection to the backend before answering
    /// `UNAVAILABLE`.
    pub backend_connect_timeout: Duration,
    /// HTTP/2 connections to the backend, used in turn (default 1).
    pub backend_connections: usize,
    /// Threads serving connections (`--worker-threads`), each a single-threaded runtime with
    /// its own `backend_connections` connections to the backend; the runtime that calls
    /// [`crate::Proxy::serve`] is the first. Default 1: only that runtime.
    pub workers: usize,
    /// Serve TLS on the listener with this certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// HTTP path answered by the proxy itself with 200 while serving (503 while draining).
    pub healthz: Option<String>,
    /// How long in-flight calls may run after SIGTERM before the proxy exits anyway.
    pub drain_timeout: Duration,
    pub http2: Http2Limits,
    /// Connection limits and timeouts of the listener (shared with the key server).
    pub connections: conn_guard::ConnectionLimits,
    /// A call with no frame in either direction for this long ends with `DEADLINE_EXCEEDED`
    /// and its backend stream is reset (Envoy's `stream_idle_timeout`, default 5 min).
    pub stream_idle_timeout: Duration,
    pub auth: crate::AuthSettings,
    pub api_keys: crate::ApiKeySettings,
    /// Proxies in front of this one whose `x-forwarded-for` entries are trusted (Envoy's
    /// `xff_num_trusted_hops`); 0 (the default) means the TCP peer is the client.
    pub xff_num_trusted_hops: u8,
    pub access_log: crate::AccessLogSettings,
    /// The wall clock read for token times (`exp`, `nbf`), the verified-token cache's and the
    /// API-key caches' expiry. [`clock::system`] by default; tests inject a
    /// `clock::ManualClock` and move time instead of sleeping.
    pub clock: clock::SharedClock,
    /// The admin listener (`--admin-listen`): metrics, health, readiness, config. Off when
    /// `None`, and then no metric is recorded either.
    pub admin: Option<AdminSettings>,
    /// Poll the backend's `grpc.health.v1.Health/Check` (`--health-check-grpc-backend`);
    /// `/readyz` and the `--healthz` path report it.
    pub backend_health: Option<BackendHealthCheck>,
    /// The files a reload reads the configuration from ([`crate::Reloader::reload`]); `None`:
    /// only [`crate::Reloader::apply`] changes it.
    pub config_files: Option<crate::ConfigFiles>,
    /// `--watch-config`: poll `config_files` this often and reload when their content changes.
    pub watch_config: Option<Duration>,
    /// Distributed tracing (`--otlp-endpoint`): off when `None`, and then no trace header is
    /// read or written and no span is made.
    pub tracing: Option<TracingSettings>,
    /// CORS (`--cors-preset` and the other `--cors-*` flags); off when `None`.
    pub cors: Option<crate::CorsSettings>,
    /// gRPC server reflection answered by the proxy (`--reflection`); off when `None`.
    pub reflection: Option<ReflectionSettings>,
    /// How HTTP/JSON calls are translated (`--transcoding-*`, ESPv2's flags).
    pub transcoding: transcode::JsonOptions,
}

/// `--reflection`: the proxy answers `grpc.reflection.v1` and `v1alpha` from the descriptor it
/// enforces, listing only the API's services. Documented in README.md ("Server reflection").
#[derive(Debug, Clone, Default)]
pub struct ReflectionSettings {
    /// The method (selector) whose JWT and API-key rules reflection calls must pass
    /// (`--reflection-rules-of`); `None`: the API's first method.
    pub rules_of: Option<String>,
}

/// Spans exported over OTLP/HTTP protobuf. Documented in README.md ("Tracing").
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// Where spans are POSTed.
    pub otlp_endpoint: OtlpEndpoint,
    /// The share of new traces sampled (0.0 to 1.0) when the caller sends no valid
    /// `traceparent`; with one, its `sampled` flag decides. ESPv2's default: 0.001.
    pub sample_rate: f64,
    /// Ended spans waiting for export at most; past that new spans are dropped, never waited for.
    pub max_queue_size: usize,
    /// How long the exporter waits between exports when the queue is not full.
    pub scheduled_delay: Duration,
    /// Bound on one export request (retries included).
    pub export_timeout: Duration,
    /// Bound on the last export at shutdown, after the drain.
    pub flush_timeout: Duration,
}

impl TracingSettings {
    /// ESPv2's sampling rate (`--tracing_sample_rate`: one call in a thousand).
    pub const DEFAULT_SAMPLE_RATE: f64 = 0.001;

    pub fn new(otlp_endpoint: OtlpEndpoint) -> Self {
        Self {
            otlp_endpoint,
            sample_rate: Self::DEFAULT_SAMPLE_RATE,
            // The OpenTelemetry SDK's defaults (OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY).
            max_queue_size: 2048,
            scheduled_delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

/// `--otlp-endpoint`: an `http://` or `https://` URL with a host. A URL without a path (or
/// with `/` alone) gets the OTLP/HTTP traces path, `/v1/traces`; any other path is used as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(http::Uri);

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for OtlpEndpoint {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SettingsError::OtlpEndpoint(s.to_owned());
        let uri: http::Uri = s.parse().map_err(|_| bad())?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
        let authority = uri.authority().ok_or_else(bad)?;
        if !scheme_ok || authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad());
        }
        if matches!(uri.path(), "" | "/") && uri.query().is_none() {
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/v1/traces"));
            return http::Uri::from_parts(parts).map(Self).map_err(|_| bad());
        }
        Ok(Self(uri))
    }
}

/// The admin listener's settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `/readyz` waits until every provider's key set has been fetched once (default true;
    /// `--readyz-skip-keys` turns it off).
    pub ready_requires_keys: bool,
    /// The files the configuration was loaded from, for `/config`.
    pub config_sources: Vec<String>,
}

impl AdminSettings {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            ready_requires_keys: true,
            config_sources: Vec::new(),
        }
    }
}

/// ESPv2's `--health_check_grpc_backend`: the backend's gRPC health, polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealthCheck {
    /// Time between two checks; each check also times out after it (at most 5 s).
    pub interval: Duration,
    /// The service name asked about; empty means the whole server.
    pub service: String,
}

impl Default for BackendHealthCheck {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            service: String::new(),
        }
    }
}

impl ProxySettings {
    /// Settings with esprit's defaults for everything but the two addresses.
    pub fn new(listen: SocketAddr, backend: BackendUrl) -> Self {
        Self {
            listen,
            backend,
            backend_ca: None,
            backend_connect_timeout: Duration::from_secs(5),
            backend_connections: 1,
            workers: 1,
            tls: None,
            healthz: None,
            drain_timeout: Duration::from_secs(10),
            http2: Http2Limits::default(),
            connections: conn_guard::ConnectionLimits::default(),
            stream_idle_timeout: Duration::from_secs(300),
            auth: crate::AuthSettings::default(),
            api_keys: crate::ApiKeySettings::default(),
            xff_num_trusted_hops: 0,
            access_log: crate::AccessLogSettings::default(),
            clock: clock::system(),
            admin: None,
            backend_health: None,
            config_files: None,
            watch_config: None,
            tracing: None,
            cors: None,
            reflection: None,
            transcoding: transcode::JsonOptions::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// HTTP/2 limits, set explicitly on the listener (hyper's and tonic's defaults leave some
/// unbounded). Documented in README.md.
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to each client connection.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: large enough that a 64 KiB token plus ordinary metadata
    /// reaches the verifier and gets a clear "too large" answer rather than a stream reset.
    pub max_header_list_size: u32,
    /// Streams a client may open and reset before we read them (CVE-2023-44487, "rapid reset").
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset because of client protocol errors before closing the connection.
    pub max_local_error_reset_streams: usize,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    /// Ping idle connections this often; close them when a ping gets no answer in `keep_alive_timeout`.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 1024,
            max_header_list_size: 128 * 1024,
            max_pending_accept_reset_streams: 50,
            max_local_error_reset_streams: 1024,
            initial_stream_window_size: 1024 * 1024,
            initial_connection_window_size: 4 * 1024 * 1024,
            keep_alive_interval: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// Where calls go: `grpc://host:port` (h2c) or `grpcs://host:port` (HTTP/2 over TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    pub tls: bool,
    /// `host:port` as given.
    pub authority: http::uri::Authority,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("backend {0:?}: expected grpc://HOST:PORT or grpcs://HOST:PORT")]
    BackendScheme(String),
    #[error("backend {0:?}: expected HOST:PORT after the scheme, with no path")]
    BackendAuthority(String),
    #[error("OTLP endpoint {0:?}: expected an http:// or https:// URL with a host")]
    OtlpEndpoint(String),
}

impl std::str::FromStr for BackendUrl {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("grpc://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("http://") {
            // ESPv2 spells h2c backends `grpc://`, Envoy users often `http://`; both mean h2c.
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(SettingsError::BackendScheme(s.to_owned()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let authority: http::uri::Authority = rest
            .parse()
            .map_err(|_| SettingsError::BackendAuthority(s.to_owned()))?;
        if authority.port_u16().is_none() || authority.host().is_empty() || rest.contains('@') {
            return Err(SettingsError::BackendAuthority(s.to_owned()));
        }
        Ok(Self { tls, authority })
    }
}

impl BackendUrl {
    pub fn scheme(&self) -> http::uri::Scheme {
        if self.tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls() {
        let ok: BackendUrl = "grpc://127.0.0.1:8000".parse().unwrap();
        assert!(!ok.tls);
        assert_eq!(ok.authority.as_str(), "127.0.0.1:8000");
        let tls: BackendUrl = "grpcs://backend.example.com:443".parse().unwrap();
        assert!(tls.tls);
        for bad in [
            "127.0.0.1:8000",
            "ftp://x:1",
            "grpc://host",
            "grpc://host:1/path",
            "grpc://u@h:1",
        ] {
            assert!(
                bad.parse::<BackendUrl>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn otlp_endpoints() {
        let table = [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example.com",
                "https://otel.example.com/v1/traces",
            ),
            (
                "https://otel.example.com/custom/traces",
                "https://otel.example.com/custom/traces",
            ),
            (
                "http://127.0.0.1:1/v1/traces",
                "http://127.0.0.1:1/v1/traces",
            ),
        ];
        for (given, want) in table {
            assert_eq!(given.parse::<OtlpEndpoint>().unwrap().to_string(), want);
        }
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "ftp://x/",
            "/v1/traces",
            "http://user@collector:4318",
            "",
        ] {
            assert!(
                bad.parse::<OtlpEndpoint>().is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
