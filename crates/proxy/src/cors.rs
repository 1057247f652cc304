//! CORS, with ESPv2's flags (`--cors-preset basic|cors_with_regex`, …): which requests are
//! preflights, whether an origin is allowed, and which headers an answer carries. Pure: the
//! handler applies the [`Step`] it returns (answer a preflight before any credential is looked
//! at, or add the headers to whatever answer the call gets, rejections included).
//!
//! As Envoy's CORS filter does for ESPv2: an allowed origin is echoed in
//! `Access-Control-Allow-Origin` (also with the `*` of the default `--cors-allow-origin`); an
//! origin not allowed gets no CORS header at all, so the browser refuses to let the page read
//! the answer. With the service config's `endpoints[].allow_cors: true` preflights go to the
//! backend instead (ESP's behaviour), unauthenticated.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

use crate::wire::Rejection;

/// ESPv2's `--cors_allow_methods` default.
pub const DEFAULT_ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// ESPv2's `--cors_allow_headers` default, plus what a gRPC-Web client sends (`X-Grpc-Web`,
/// `Grpc-Timeout`): gRPC-Web is always on in esprit.
pub const DEFAULT_ALLOW_HEADERS: &str = "DNT,User-Agent,X-User-Agent,X-Requested-With,\
If-Modified-Since,Cache-Control,Content-Type,Range,Authorization,X-Grpc-Web,Grpc-Timeout";
/// ESPv2's `--cors_expose_headers` default, plus the headers a gRPC-Web client reads its status
/// from (a trailers-only answer, every rejection of the proxy, carries them as headers).
pub const DEFAULT_EXPOSE_HEADERS: &str =
    "Content-Length,Content-Range,Grpc-Status,Grpc-Message,Grpc-Status-Details-Bin";
/// ESPv2's `--cors_max_age` default: 480h (20 days).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(480 * 3600);
/// The largest compiled `--cors-allow-origin-regex` (RE2's program-size limit is ESPv2's bound).
const REGEX_SIZE_LIMIT: usize = 64 * 1024;

/// ESPv2's `--cors_preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsPreset {
    /// `--cors-allow-origin`: one origin, or `*` for any.
    Basic,
    /// `--cors-allow-origin-regex`: origins the regular expression matches whole.
    CorsWithRegex,
}

/// The CORS flags, as given.
#[derive(Debug, Clone)]
pub struct CorsSettings {
    pub preset: CorsPreset,
    pub allow_origin: String,
    pub allow_origin_regex: String,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

impl CorsSettings {
    /// ESPv2's defaults for `preset` (with the gRPC-Web headers added, see the constants).
    pub fn new(preset: CorsPreset) -> Self {
        Self {
            preset,
            allow_origin: "*".to_owned(),
            allow_origin_regex: String::new(),
            allow_methods: DEFAULT_ALLOW_METHODS.to_owned(),
            allow_headers: DEFAULT_ALLOW_HEADERS.to_owned(),
            expose_headers: DEFAULT_EXPOSE_HEADERS.to_owned(),
            allow_credentials: false,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// A CORS setting the proxy cannot serve; refused at start (ESPv2's messages where it has one).
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("--cors-allow-origin cannot be empty when --cors-preset=basic")]
    EmptyOrigin,
    #[error("--cors-allow-origin-regex cannot be empty when --cors-preset=cors_with_regex")]
    EmptyRegex,
    #[error("invalid --cors-allow-origin-regex")]
    Regex(#[source] regex::Error),
    #[error("--cors-{flag} is not a valid header value")]
    HeaderValue { flag: &'static str },
}

#[derive(Debug, Clone)]
enum AllowOrigin {
    Any,
    Exact(HeaderValue),
    Regex(regex::Regex),
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub(crate) struct CorsPolicy {
    origins: AllowOrigin,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: HeaderValue,
    credentials: bool,
    max_age: HeaderValue,
}

impl CorsPolicy {
    pub(crate) fn new(settings: &CorsSettings) -> Result<Self, CorsError> {
        let origins = match settings.preset {
            CorsPreset::Basic if settings.allow_origin.is_empty() => {
                return Err(CorsError::EmptyOrigin);
            }
            CorsPreset::Basic if settings.allow_origin == "*" => AllowOrigin::Any,
            CorsPreset::Basic => AllowOrigin::Exact(value(&settings.allow_origin, "allow-origin")?),
            CorsPreset::CorsWithRegex if settings.allow_origin_regex.is_empty() => {
                return Err(CorsError::EmptyRegex);
            }
            // Envoy's safe_regex matches the whole value.
            CorsPreset::CorsWithRegex => AllowOrigin::Regex(
                regex::RegexBuilder::new(&format!("^(?:{})$", settings.allow_origin_regex))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(CorsError::Regex)?,
            ),
        };
        Ok(Self {
            origins,
            methods: value(&settings.allow_methods, "allow-methods")?,
            headers: value(&settings.allow_headers, "allow-headers")?,
            expose: value(&settings.expose_headers, "expose-headers")?,
            credentials: settings.allow_credentials,
            max_age: HeaderValue::from(settings.max_age.as_secs()),
        })
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            AllowOrigin::Any => true,
            AllowOrigin::Exact(allowed) => allowed == origin,
            AllowOrigin::Regex(regex) => origin.to_str().is_ok_and(|o| regex.is_match(o)),
        }
    }

    /// What an answer to an allowed preflight carries.
    fn preflight_headers(&self, origin: &HeaderValue) -> HeaderMap {
        let mut headers = self.common_headers(origin);
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers
    }

    /// What any other answer to an allowed origin carries.
    fn actual_headers(&self, origin: &HeaderValue) -> HeaderMap {
        let mut headers = self.common_headers(origin);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        headers
    }

    fn common_headers(&self, origin: &HeaderValue) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        // The answer depends on the origin: caches must not give it to another one.
        headers.insert(VARY, HeaderValue::from_static("Origin"));
        headers
    }
}

fn value(text: &str, flag: &'static str) -> Result<HeaderValue, CorsError> {
    HeaderValue::from_str(text).map_err(|_| CorsError::HeaderValue { flag })
}

/// What the handler does with a request, CORS-wise.
#[derive(Debug)]
pub(crate) enum Step {
    /// Any other request: the call proceeds, and its answer gets these headers (none when CORS
    /// is off, the request has no `Origin`, or the origin is not allowed).
    Proceed(Option<HeaderMap>),
    /// A preflight: the call ends at this step.
    End(Preflight),
}

/// How a preflight is answered.
#[derive(Debug)]
pub(crate) enum Preflight {
    /// Answered by the proxy itself: 200 with these headers.
    Answer(HeaderMap),
    /// Refused (origin not allowed, or not a whole preflight): this answer, with no CORS
    /// header.
    Refuse(Rejection),
    /// For the backend to answer (`endpoints[].allow_cors: true`): forwarded with no
    /// credential check.
    ToBackend,
}

/// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method` (Fetch standard).
fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The CORS step. `policy` is `None` without `--cors-preset`; `preflight_to_backend` is the
/// service config's `endpoints[].allow_cors`.
pub(crate) fn step(
    policy: Option<&CorsPolicy>,
    preflight_to_backend: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Step {
    let preflight = is_preflight(method, headers);
    if preflight && preflight_to_backend {
        return Step::End(Preflight::ToBackend);
    }
    let Some(policy) = policy else {
        return Step::Proceed(None);
    };
    let origin = headers.get(ORIGIN);
    if preflight {
        return match origin {
            Some(origin) if policy.allows(origin) => {
                Step::End(Preflight::Answer(policy.preflight_headers(origin)))
            }
            _ => Step::End(Preflight::Refuse(Rejection::CorsOriginNotAllowed)),
        };
    }
    if method == Method::OPTIONS {
        // ESPv2: an OPTIONS without the preflight headers, with CORS on, is a broken preflight.
        return Step::End(Preflight::Refuse(Rejection::CorsPreflightIncomplete));
    }
    Step::Proceed(
        origin
            .filter(|origin| policy.allows(origin))
            .map(|origin| policy.actual_headers(origin)),
    )
}

#[cfg(test)]
mod tests;
