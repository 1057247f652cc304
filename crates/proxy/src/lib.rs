//! The I/O shell of esprit: accepts HTTP/2 (h2c or TLS) and HTTP/1.1 connections, decides per call
//! whether the request belongs to the configured API, and forwards gRPC calls (and gRPC-Web calls,
//! translated) to one backend with their metadata, trailers, status and deadline intact; answers
//! CORS preflights.
//!
//! What it deliberately does not do: parse or re-encode protobuf messages (bodies are streamed
//! frame by frame, never buffered), or make authentication decisions itself (those are pure
//! functions in other crates; this crate gathers their inputs — clock, key caches — and applies
//! their verdicts).

mod access_line;
mod access_log;
mod api_key;
mod auth;
mod backend;
mod body;
mod call_trace;
mod cors;
mod drain;
mod exec;
mod forward;
mod grpc_web;
mod handler;
mod headers;
mod health;
pub mod log_sink;
mod metrics;
mod protocol;
mod reflection;
mod reload;
mod request_body;
mod routes;
mod server;
mod settings;
mod stream;
mod trace_context;
mod transcoding;
mod wire;
mod workers;

pub use access_line::AccessLogFormat;
pub use access_log::{AccessLogSettings, install as install_access_log};
pub use api_key::{
    ApiKeySettings, CallerCredentials, EjectionPolicy, OnUnreachable, RESIGN_BEFORE_EXPIRY_SECS,
    check_url_transport, find_api_key,
};
pub use auth::AuthSettings;
pub use conn_guard::ConnectionLimits;
pub use cors::{
    CorsError, CorsPreset, CorsSettings, DEFAULT_ALLOW_HEADERS, DEFAULT_ALLOW_METHODS,
    DEFAULT_EXPOSE_HEADERS, DEFAULT_MAX_AGE,
};
pub use reflection::{
    MAX_REQUEST_BYTES as REFLECTION_MAX_REQUEST_BYTES,
    MAX_REQUESTS_PER_STREAM as REFLECTION_MAX_REQUESTS_PER_STREAM,
};
pub use reload::{ConfigFiles, Reloader, WATCH_INTERVAL_MAX, WATCH_INTERVAL_MIN};
pub use routes::Unenforceable;
pub use server::Proxy;
pub use settings::{
    AdminSettings, BackendHealthCheck, BackendUrl, Http2Limits, OtlpEndpoint, ProxySettings,
    ReflectionSettings, SettingsError, TlsFiles, TracingSettings,
};
pub use transcode::JsonOptions;
pub use transcoding::MAX_BODY_BYTES as MAX_HTTP_JSON_BODY_BYTES;
pub use wire::{Rejection, code_name};

impl From<conn_guard::tls::TlsFileError> for ProxyError {
    fn from(err: conn_guard::tls::TlsFileError) -> Self {
        use conn_guard::tls::TlsFileError as E;
        match err {
            E::ReadFile { what, path, source } => ProxyError::ReadFile { what, path, source },
            E::BadPem {
                what,
                path,
                problem,
            } => ProxyError::BadPem {
                what,
                path,
                problem,
            },
            E::Tls(err) => ProxyError::Tls(err),
        }
    }
}

/// Failures while starting the proxy. Failures of single calls are never errors of this kind:
/// they become responses (see [`Rejection`]).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("binding the listener on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {what} from {path}")]
    ReadFile {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} in {path}: {problem}")]
    BadPem {
        what: &'static str,
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
    #[error("loading the system's root certificates found none")]
    NoRootCertificates,
    #[error("refusing to serve this configuration")]
    Unenforceable(#[from] routes::Unenforceable),
    #[error("setting up key fetching")]
    Jwks(#[from] keysets::FetchError),
    #[error("setting up API-key checks: {0}")]
    ApiKeys(String),
    #[error("starting the admin listener")]
    Admin(#[from] admin::AdminError),
    #[error("setting up the backend health check: {0}")]
    HealthCheck(String),
    #[error("no configuration files to reload from")]
    NoConfigFiles,
    #[error("loading the service config from {}", .path.display())]
    LoadConfig {
        path: std::path::PathBuf,
        #[source]
        source: service_config::ConfigErrors,
    },
    #[error("the reload task ended: {0}")]
    ReloadTask(String),
    #[error("setting up the OTLP span exporter: {0}")]
    Tracing(String),
    #[error("starting the worker threads")]
    Workers(#[source] std::io::Error),
    #[error("setting up CORS")]
    Cors(#[from] cors::CorsError),
}
