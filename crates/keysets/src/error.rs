//! The one error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why fetching a provider's key set failed, one variant per failure an operator can tell
/// apart. These are for logs and for `esprit token inspect`; clients of the proxy see only
/// ESP's "Jwks remote fetch is failed". Messages name URLs and paths, never key material.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an absolute `http`, `https` or `file` URL (or a discovered `jwks_uri`
    /// is not `http`/`https`).
    #[error("invalid key set URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured or discovered.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server answered with a status other than 2xx (and not a redirect).
    #[error("GET {url} answered HTTP {status}")]
    HttpStatus {
        /// The URL fetched.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The server answered with a redirect; redirects are never followed.
    #[error(
        "GET {url} answered a redirect (HTTP {status}) to {location:?}; redirects are not followed"
    )]
    RedirectRefused {
        /// The URL fetched.
        url: String,
        /// The 3xx status code.
        status: u16,
        /// The `Location` header, when there was one.
        location: Option<String>,
    },
    /// The fetch (connect, request and body) did not finish within the fetch timeout.
    #[error("GET {url} timed out after {after:?}")]
    Timeout {
        /// The URL fetched.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The body (or file) is larger than the size cap.
    #[error("key set at {url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL fetched.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// Connecting, TLS handshake, or reading the response failed.
    #[error("GET {url} failed")]
    Transport {
        /// The URL fetched.
        url: String,
        /// The client's error (connection refused, certificate not trusted, reset, ...).
        #[source]
        source: reqwest::Error,
    },
    /// The body is not a usable key set: `jose` rejected it (bad JSON, no usable key, ...).
    #[error("key set at {url} is not usable")]
    Parse {
        /// The URL fetched.
        url: String,
        /// Why `jose` rejected it.
        #[source]
        source: jose::JoseError,
    },
    /// The OpenID discovery document is not a JSON object.
    #[error("OpenID discovery document at {url} is not a JSON object")]
    DiscoveryBadJson {
        /// The discovery URL.
        url: String,
    },
    /// The OpenID discovery document has no string `jwks_uri`.
    #[error("OpenID discovery document at {url} has no [jwks_uri]")]
    DiscoveryMissingJwksUri {
        /// The discovery URL.
        url: String,
    },
    /// Reading a `file://` key set failed.
    #[error("reading key set file {path}")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the extra CA file failed.
    #[error("reading CA file {path}")]
    CaRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The extra CA file holds no usable PEM certificate.
    #[error("CA file {path} holds no usable PEM certificate")]
    CaInvalid {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client (its TLS configuration) could not be built.
    #[error("building the HTTPS client failed")]
    Client {
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
}

impl FetchError {
    /// The variant's name, for logs and metric labels.
    pub fn variant_name(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl { .. } => "InvalidUrl",
            FetchError::HttpStatus { .. } => "HttpStatus",
            FetchError::RedirectRefused { .. } => "RedirectRefused",
            FetchError::Timeout { .. } => "Timeout",
            FetchError::TooLarge { .. } => "TooLarge",
            FetchError::Transport { .. } => "Transport",
            FetchError::Parse { .. } => "Parse",
            FetchError::DiscoveryBadJson { .. } => "DiscoveryBadJson",
            FetchError::DiscoveryMissingJwksUri { .. } => "DiscoveryMissingJwksUri",
            FetchError::FileRead { .. } => "FileRead",
            FetchError::CaRead { .. } => "CaRead",
            FetchError::CaInvalid { .. } => "CaInvalid",
            FetchError::Client { .. } => "Client",
        }
    }

    /// The message with every cause appended (`a: b: c`), for logs and `last_error`.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
