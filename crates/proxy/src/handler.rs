//! One call: route, sanitize, forward, answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access_log::RejectedLines;
use crate::api_key::{ApiKeyChecker, KeyVerdict, OnUnreachable};
use crate::auth::Authenticator;
use crate::backend::BackendPool;
use crate::body::{CallLog, ProxyBody};
use crate::headers;
use crate::reject::Rejection;
use crate::request_body::RequestBody;
use crate::routes::RouteTable;
use crate::settings::BackendUrl;

const USERINFO: http::HeaderName = http::HeaderName::from_static("x-endpoint-api-userinfo");
const CONSUMER_PROJECT: http::HeaderName =
    http::HeaderName::from_static("x-endpoint-api-consumer-project");

/// Everything a call needs, shared by all connections.
pub(crate) struct State {
    pub routes: RouteTable,
    /// Present when some method checks JWTs.
    pub auth: Option<Authenticator>,
    /// Present when some method needs an API key.
    pub api_keys: Option<ApiKeyChecker>,
    pub backend: BackendPool,
    pub backend_url: BackendUrl,
    pub healthz: Option<String>,
    pub draining: AtomicBool,
    pub forwarding: headers::Forwarding,
    pub rejected_lines: Arc<RejectedLines>,
}

pub(crate) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut log = CallLog::new(peer, Instant::now(), &state.rejected_lines);
    let (mut parts, body) = request.into_parts();
    // Before anything reads the headers: forged copies of what we vouch for go, and the
    // forwarding headers are the proxy's own.
    headers::sanitize_request(&mut parts.headers);
    let client = headers::set_forwarding(
        &mut parts.headers,
        parts.uri.authority(),
        peer,
        state.forwarding,
    );
    log.set_client(client);
    let grpc = headers::is_grpc(&parts.headers);

    if let Some(healthz) = &state.healthz
        && parts.uri.path() == healthz
    {
        return Ok(health_response(&state, log));
    }

    let Some(route) = state.routes.get(parts.uri.path()) else {
        log.set_path(parts.uri.path());
        log.set_http_status(Rejection::UndefinedMethod.http_status());
        return Ok(Rejection::UndefinedMethod.into_response(grpc, log));
    };
    log.set_selector(route.selector.clone());
    if let Some(policy) = &route.auth {
        // A route with a JWT rule exists only when the authenticator does; if that ever broke,
        // refuse rather than forward unchecked.
        let Some(auth) = &state.auth else {
            let rejection = Rejection::Internal("authentication is not configured");
            return Ok(rejection.into_response(grpc, log));
        };
        match auth.authenticate(policy, &parts.headers, &parts.uri).await {
            Ok(authn::Verdict::Allowed { principal }) => {
                if let Some(principal) = principal {
                    // ESPv2: the verified token's payload segment, base64url without padding, as
                    // it appeared in the token. The client's copies were removed above.
                    match HeaderValue::from_str(principal.payload_segment()) {
                        Ok(value) => {
                            parts.headers.insert(USERINFO, value);
                        }
                        Err(_) => {
                            let rejection =
                                Rejection::Internal("verified claims are not a header value");
                            return Ok(rejection.into_response(grpc, log));
                        }
                    }
                }
            }
            Err(err) => {
                log.set_auth_failure(&err);
                return Ok(Rejection::Auth(err).into_response(grpc, log));
            }
        }
    }
    // ESPv2's filter order: JWT first, then the API key (Service Control).
    if let Some(locations) = &route.api_key {
        let Some(checker) = &state.api_keys else {
            return Ok(
                Rejection::Internal("API-key checking is not configured").into_response(grpc, log)
            );
        };
        let Some(key) = crate::api_key::find_api_key(locations, &parts.headers, &parts.uri) else {
            log.set_api_key_outcome("missing");
            return Ok(Rejection::ApiKeyMissing.into_response(grpc, log));
        };
        match checker.check(&key).await {
            Ok(KeyVerdict::Valid { consumer_project }) => {
                log.set_api_key_outcome("valid");
                match HeaderValue::from_str(&consumer_project) {
                    Ok(value) => {
                        parts.headers.insert(CONSUMER_PROJECT, value);
                    }
                    Err(_) => {
                        let rejection =
                            Rejection::Internal("consumer project is not a header value");
                        return Ok(rejection.into_response(grpc, log));
                    }
                }
            }
            Ok(KeyVerdict::Invalid { reason }) => {
                tracing::debug!(%reason, "API key refused");
                log.set_api_key_outcome("invalid");
                return Ok(Rejection::ApiKeyInvalid.into_response(grpc, log));
            }
            Err(err) => match checker.on_unreachable {
                OnUnreachable::FailClosed => {
                    tracing::warn!(error = %err, "API key could not be checked; refusing the call");
                    log.set_api_key_outcome("unchecked");
                    return Ok(Rejection::ApiKeyCheckUnavailable.into_response(grpc, log));
                }
                OnUnreachable::FailOpen => {
                    tracing::warn!(error = %err, "API key could not be checked; letting the call through (fail open)");
                    log.set_api_key_outcome("unchecked-allowed");
                }
            },
        }
    }
    if !grpc || parts.version != Version::HTTP_2 {
        log.set_http_status(Rejection::NotGrpc.http_status());
        return Ok(Rejection::NotGrpc.into_response(false, log));
    }

    let deadline = parts
        .headers
        .get("grpc-timeout")
        .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        .map(|d| tokio::time::Instant::now() + d);

    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(state.backend_url.scheme());
    uri.authority = Some(state.backend_url.authority.clone());
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = match http::Uri::from_parts(uri) {
        Ok(uri) => uri,
        // Unreachable for a path that matched a route; answered rather than assumed.
        Err(_) => return Ok(Rejection::UndefinedMethod.into_response(grpc, log)),
    };

    let upstream = state
        .backend
        .pick()
        .request(Request::from_parts(parts, RequestBody::new(body)));
    let result = match deadline {
        Some(at) => match tokio::time::timeout_at(at, upstream).await {
            Ok(result) => result,
            Err(_) => return Ok(Rejection::DeadlineExceeded.into_response(true, log)),
        },
        None => upstream.await,
    };
    match result {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::sanitize_response(&mut parts.headers);
            log.set_http_status(parts.status);
            let deadline = deadline.map(|at| Box::pin(tokio::time::sleep_until(at)));
            let body = ProxyBody::backend(body, &parts.headers, deadline, log);
            Ok(Response::from_parts(parts, body))
        }
        Err(err) => {
            let reason = if err.is_connect() {
                "connection failure"
            } else {
                "remote reset"
            };
            tracing::warn!(error = %DisplayChain(&err), backend = %state.backend_url.authority, "backend call failed");
            Ok(Rejection::BackendUnavailable(reason).into_response(true, log))
        }
    }
}

fn health_response(state: &State, mut log: CallLog) -> Response<ProxyBody> {
    let (status, text) = if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"DRAINING\"}")
    } else {
        (StatusCode::OK, "{\"status\":\"SERVING\"}")
    };
    log.set_http_status(status);
    log.set_status(if status.is_success() {
        tonic::Code::Ok
    } else {
        tonic::Code::Unavailable
    });
    let mut response = Response::new(ProxyBody::full(Bytes::from_static(text.as_bytes()), log));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `grpc-timeout` (gRPC over HTTP/2 spec): 1 to 8 ASCII digits and a unit H, M, S, m, u or n.
/// Anything else is ignored, as gRPC servers do.
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An error and its sources on one line, for logs.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        let table: &[(&str, Option<Duration>)] = &[
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("100m", Some(Duration::from_millis(100))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789S", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("-1S", None),
            ("", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_grpc_timeout(text.as_bytes()), *want, "{text}");
        }
    }
}
