//! The key server: Google's public-key endpoints for service accounts, over HTTP/1.1 and h2c,
//! or TLS (ALPN h2 and http/1.1) with a certificate.
//!
//! - `GET /robot/v1/metadata/x509/{email}`: JSON map of key id to PEM certificate.
//! - `GET /service_accounts/v1/jwk/{email}`: JWKS.
//!
//! - `POST /v1/services/{service}:check`: is an API key valid ([`check`] has the protocol).
//!
//! With a token service (`iam serve --issuer-url`, [`serve_tokens`]; else these answer 404):
//! - `GET /.well-known/openid-configuration`: OpenID discovery.
//! - `GET /oauth2/v3/certs` (JWKS) and `GET /oauth2/v1/certs` (X.509 map): its signing keys.
//! - `POST /token`: the OAuth 2.0 token endpoint (RFC 7523 JWT bearer; [`token`] has the protocol).
//! - `POST /v1/projects/-/serviceAccounts/{email}:generateIdToken | :generateAccessToken |
//!   :signJwt`: the IAM Credentials API ([`iam_credentials`] has the protocol).
//!
//! All are read from the store on every request (a bounded pool of read-only SQLite
//! connections in WAL mode, [`StorePool`], so lookups run side by side and a key created or
//! disabled by another process shows at the next request; 503 when no connection is free within
//! the pool's wait), carry
//! `Cache-Control: public, max-age=300` ([`CACHE_MAX_AGE_SECS`], the same 300 s ESPv2 caches key
//! sets for), and the key documents answer 404 with a JSON error body for an unknown account. Errors carry
//! `Cache-Control: no-store` so that an account created later is not hidden by a cached 404.

use crate::metrics::{IamMetrics, route_label};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

mod check;
mod iam_credentials;
mod token;

pub use check::CHECK_BODY_LIMIT;

use crate::check_auth::CheckAuth;
use crate::ids::decode_path_segment;
use crate::render;
use crate::store::{PoolSettings, Store, StoreLocation, StorePool};
use crate::token::TokenService;
use crate::{IamError, Result};

/// `max-age` of the key documents, seconds. A verifier may keep a key this long after it was
/// disabled or deleted; ESPv2 caches key sets for the same 300 s.
pub const CACHE_MAX_AGE_SECS: u64 = 300;

/// The `Cache-Control` of the key documents, spelled from [`CACHE_MAX_AGE_SECS`].
pub(crate) const CACHE_CONTROL_OK: &str = "public, max-age=300";
const _: () = assert!(CACHE_MAX_AGE_SECS == 300, "update CACHE_CONTROL_OK");

/// How long open connections may finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

const X509_PREFIX: &str = "/robot/v1/metadata/x509/";
const JWK_PREFIX: &str = "/service_accounts/v1/jwk/";
const SERVICES_PREFIX: &str = "/v1/services/";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/oauth2/v3/certs";
const X509_CERTS_PATH: &str = "/oauth2/v1/certs";
const TOKEN_PATH: &str = "/token";

/// What every request handler gets: the store's pool and, with `--issuer-url`, the token
/// service. Cheap to clone.
#[derive(Clone, Debug)]
struct State {
    store: Arc<StorePool>,
    tokens: Option<TokenService>,
    /// Who may ask for API-key checks.
    check_auth: CheckAuth,
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The X.509 map of an account (email decoded).
    X509(String),
    /// The JWKS of an account (email decoded).
    Jwks(String),
    /// `POST /v1/services/{service}:check`: an API-key check (service name decoded).
    ServiceCheck(String),
    /// `GET /.well-known/openid-configuration` (token service).
    Discovery,
    /// `GET /oauth2/v3/certs` (token service).
    TokenJwks,
    /// `GET /oauth2/v1/certs` (token service).
    TokenX509,
    /// `POST /token` (token service).
    Token,
    /// `POST /v1/projects/{project}/serviceAccounts/{account}:{method}`: the IAM Credentials
    /// API (token service; [`iam_credentials`] has the protocol).
    IamCredentials(crate::iam_credentials::CallPath),
    /// A known path with the wrong method; the value is the `Allow` header.
    MethodNotAllowed(&'static str),
    /// Anything else.
    NotFound,
}

/// The email in the one path segment after `prefix`, percent-decoded.
fn email_after<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let segment = path.strip_prefix(prefix)?;
    (!segment.is_empty() && !segment.contains('/')).then_some(segment)
}

fn route(method: &Method, path: &str) -> Route {
    let key_doc = |segment: &str, make: fn(String) -> Route| {
        if method != Method::GET {
            return Route::MethodNotAllowed("GET");
        }
        decode_path_segment(segment).map_or(Route::NotFound, make)
    };
    let fixed = |allow: &'static str, want: Method, route: Route| {
        if *method == want {
            route
        } else {
            Route::MethodNotAllowed(allow)
        }
    };
    match path {
        DISCOVERY_PATH => return fixed("GET", Method::GET, Route::Discovery),
        JWKS_PATH => return fixed("GET", Method::GET, Route::TokenJwks),
        X509_CERTS_PATH => return fixed("GET", Method::GET, Route::TokenX509),
        TOKEN_PATH => return fixed("POST", Method::POST, Route::Token),
        _ => {}
    }
    if let Some(call) = crate::iam_credentials::parse_path(path) {
        if method != Method::POST {
            return Route::MethodNotAllowed("POST");
        }
        return Route::IamCredentials(call);
    }
    if let Some(segment) = email_after(path, X509_PREFIX) {
        return key_doc(segment, Route::X509);
    }
    if let Some(segment) = email_after(path, JWK_PREFIX) {
        return key_doc(segment, Route::Jwks);
    }
    if let Some(service) = email_after(path, SERVICES_PREFIX)
        .and_then(|s| s.strip_suffix(":check"))
        .filter(|s| !s.is_empty())
    {
        if method != Method::POST {
            return Route::MethodNotAllowed("POST");
        }
        return decode_path_segment(service).map_or(Route::NotFound, Route::ServiceCheck);
    }
    Route::NotFound
}

type Body = Full<Bytes>;

fn json_response(status: StatusCode, body: String, cache: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// 503 when every store connection stayed busy: the proxy counts it as "key server
/// unavailable", never as an answer about the key.
fn busy_response() -> Response<Body> {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "Store busy, retry");
    response
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let status_name = match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => "INVALID_ARGUMENT",
        StatusCode::REQUEST_TIMEOUT => "DEADLINE_EXCEEDED",
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body = json!({"error": {
        "code": status.as_u16(), "message": message, "status": status_name,
    }});
    json_response(status, body.to_string(), "no-store")
}

fn key_document(store: &Store, route: &Route) -> Result<Option<String>> {
    let (email, render_x509) = match route {
        Route::X509(email) => (email, true),
        Route::Jwks(email) => (email, false),
        _ => return Ok(None),
    };
    let keys = store.served_keys(email)?;
    if render_x509 {
        Ok(Some(render::x509_map(&keys)))
    } else {
        render::jwks(&keys).map(Some)
    }
}

async fn handle(state: State, request: Request<Incoming>) -> Response<Body> {
    let route = route(request.method(), request.uri().path());
    let store = state.store;
    match route {
        Route::NotFound => return error_response(StatusCode::NOT_FOUND, "Not found"),
        Route::MethodNotAllowed(allow) => {
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return response;
        }
        Route::ServiceCheck(service) => {
            return check::handle(store, state.tokens, &state.check_auth, service, request).await;
        }
        Route::Discovery | Route::TokenJwks | Route::TokenX509 | Route::Token => {
            // Without --issuer-url there is no token service: its paths do not exist.
            let Some(tokens) = state.tokens else {
                return error_response(StatusCode::NOT_FOUND, "Not found");
            };
            return token::handle(tokens, route, request).await;
        }
        Route::IamCredentials(call) => {
            let Some(tokens) = state.tokens else {
                return error_response(StatusCode::NOT_FOUND, "Not found");
            };
            return iam_credentials::handle(store, tokens, call, request).await;
        }
        Route::X509(_) | Route::Jwks(_) => {}
    }
    let looked_up = store
        .with_store(move |store| key_document(store, &route))
        .await;
    match looked_up {
        Ok(Some(body)) => json_response(StatusCode::OK, body, CACHE_CONTROL_OK),
        Err(IamError::UnknownAccount(email)) => error_response(
            StatusCode::NOT_FOUND,
            &format!("Service account {email} not found"),
        ),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "Not found"),
        Err(IamError::StoreBusy { .. }) => {
            tracing::warn!("key document lookup refused: every store connection is busy");
            busy_response()
        }
        Err(err) => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), "key server store lookup failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
        }
    }
}

async fn observed(
    metrics: &IamMetrics,
    state: State,
    request: Request<Incoming>,
) -> Response<Body> {
    let label = route_label(&route(request.method(), request.uri().path()));
    let started = std::time::Instant::now();
    let response = handle(state, request).await;
    metrics.record(label, response.status().as_u16(), started.elapsed());
    response
}

/// Serves the key endpoints on `listener` from the store at `store` until `shutdown`
/// resolves, then lets open connections finish (up to 5 s). Opens (and migrates) the store
/// first: an unusable store is an error before any request is accepted. Lookups use a
/// [`StorePool`] with [`PoolSettings::default`]; connections are bounded by the default
/// [`conn_guard::ConnectionLimits`]. [`serve_with`] and [`serve_pool`] take others.
pub async fn serve<F>(
    listener: TcpListener,
    store: impl Into<StoreLocation>,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()>,
{
    serve_with(
        listener,
        store,
        conn_guard::ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with the given connection limits (count per server and per peer, deadline for
/// the first request, idle timeout, premature resets).
pub async fn serve_with<F>(
    listener: TcpListener,
    store: impl Into<StoreLocation>,
    limits: conn_guard::ConnectionLimits,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()>,
{
    let location = store.into();
    // Opening connects and migrates: blocking work, off the async threads.
    let store =
        tokio::task::spawn_blocking(move || StorePool::open(location, PoolSettings::default()))
            .await
            .map_err(|join| IamError::StoreWorker(join.to_string()))??;
    serve_pool(listener, store, limits, shutdown).await
}

/// [`serve_with`] with a store pool the caller opened (its own bounds, or shared with a test).
pub async fn serve_pool<F>(
    listener: TcpListener,
    store: Arc<StorePool>,
    limits: conn_guard::ConnectionLimits,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()>,
{
    serve_tokens(listener, store, None, limits, shutdown).await
}

/// [`serve_pool`] with, when `tokens` is given, the token service's endpoints (discovery,
/// certificates, `POST /token`). The store pool and the token service must use one store file.
pub async fn serve_tokens<F>(
    listener: TcpListener,
    store: Arc<StorePool>,
    tokens: Option<TokenService>,
    limits: conn_guard::ConnectionLimits,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()>,
{
    serve_observed(
        listener,
        store,
        tokens,
        limits,
        None,
        None,
        CheckAuth::Off,
        shutdown,
    )
    .await
}

/// [`serve_tokens`], recording each request in `metrics` (the admin listener's), speaking
/// TLS when `tls` is given (`iam serve --tls-cert/--tls-key`: [`conn_guard::tls::acceptor`]),
/// and asking check callers for credentials as `check_auth` says (the functions above answer
/// checks to anyone, [`CheckAuth::Off`], as esprit always did; `iam serve` requires them off
/// loopback).
#[allow(clippy::too_many_arguments)]
pub async fn serve_observed<F>(
    listener: TcpListener,
    store: Arc<StorePool>,
    tokens: Option<TokenService>,
    limits: conn_guard::ConnectionLimits,
    metrics: Option<Arc<IamMetrics>>,
    tls: Option<conn_guard::tls::TlsAcceptor>,
    check_auth: CheckAuth,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()>,
{
    let state = State {
        store,
        tokens,
        check_auth,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    let builder = Arc::new(builder);
    let admission = conn_guard::Admission::new(limits, "key server");
    let drain = conn_guard::Drain::new();
    tokio::pin!(shutdown);
    // Over a connection limit: closed at once (the refusal is logged, rate-limited).
    while let Some(conn_guard::Admitted {
        stream,
        peer,
        permit,
    }) = admission.accept(&listener, &mut shutdown).await
    {
        let conn_state = conn_guard::ConnState::new(limits);
        let state = state.clone();
        let metrics = metrics.clone();
        let service = conn_guard::track(
            conn_state.clone(),
            hyper::service::service_fn(move |request| {
                let state = state.clone();
                let metrics = metrics.clone();
                async move {
                    let response = match metrics {
                        None => handle(state, request).await,
                        Some(metrics) => observed(&metrics, state, request).await,
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            }),
        );
        let builder = builder.clone();
        let watcher = drain.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    conn_guard::drive(connection, conn_state, watcher, Some(permit)).await;
                }
                Some(acceptor) => {
                    let deadline = conn_state.first_request_deadline();
                    let Some(stream) =
                        conn_guard::tls::handshake(&acceptor, stream, deadline, peer).await
                    else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    conn_guard::drive(connection, conn_state, watcher, Some(permit)).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, drain.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("key server connections still open after the drain timeout");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let email = "a-b-c-d@my-project.iam.gserviceaccount.com";
        let table: &[(Method, &str, Route)] = &[
            (
                Method::GET,
                "/robot/v1/metadata/x509/a-b-c-d%40my-project.iam.gserviceaccount.com",
                Route::X509(email.into()),
            ),
            (
                Method::GET,
                "/robot/v1/metadata/x509/a-b-c-d@my-project.iam.gserviceaccount.com",
                Route::X509(email.into()),
            ),
            (
                Method::GET,
                "/service_accounts/v1/jwk/a-b-c-d%40my-project.iam.gserviceaccount.com",
                Route::Jwks(email.into()),
            ),
            (
                Method::POST,
                "/service_accounts/v1/jwk/x",
                Route::MethodNotAllowed("GET"),
            ),
            (
                Method::POST,
                "/v1/services/bookstore.example.com:check",
                Route::ServiceCheck("bookstore.example.com".into()),
            ),
            (
                Method::GET,
                "/v1/services/bookstore.example.com:check",
                Route::MethodNotAllowed("POST"),
            ),
            (Method::GET, "/robot/v1/metadata/x509/", Route::NotFound),
            (Method::GET, "/robot/v1/metadata/x509/a/b", Route::NotFound),
            (Method::GET, "/robot/v1/metadata/x509/%ff", Route::NotFound),
            (Method::GET, "/", Route::NotFound),
            (
                Method::GET,
                "/.well-known/openid-configuration",
                Route::Discovery,
            ),
            (Method::GET, "/oauth2/v3/certs", Route::TokenJwks),
            (Method::GET, "/oauth2/v1/certs", Route::TokenX509),
            (
                Method::POST,
                "/oauth2/v1/certs",
                Route::MethodNotAllowed("GET"),
            ),
            (Method::POST, "/token", Route::Token),
            (Method::GET, "/token", Route::MethodNotAllowed("POST")),
            (Method::POST, "/token/x", Route::NotFound),
            (
                Method::POST,
                "/v1/projects/-/serviceAccounts/a-b-c-d@my-project.iam.gserviceaccount.com:signJwt",
                Route::IamCredentials(crate::iam_credentials::CallPath {
                    project: "-".into(),
                    account: email.into(),
                    method: crate::iam_credentials::Method::SignJwt,
                }),
            ),
            (
                Method::GET,
                "/v1/projects/-/serviceAccounts/x:generateIdToken",
                Route::MethodNotAllowed("POST"),
            ),
            (
                Method::POST,
                "/v1/projects/-/serviceAccounts/x:signBlob",
                Route::NotFound,
            ),
            (Method::GET, "/v1/services/x", Route::NotFound),
            (Method::POST, "/v1/services/:check", Route::NotFound),
            (Method::POST, "/v1/services/a/b:check", Route::NotFound),
            (
                Method::POST,
                "/v1/services/my%20api:check",
                Route::ServiceCheck("my api".into()),
            ),
        ];
        for (method, path, want) in table {
            assert_eq!(&route(method, path), want, "{method} {path}");
        }
    }
}
