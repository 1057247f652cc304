//! The forward step: the checked call goes to the backend with the caller's `grpc-timeout`
//! enforced; the backend's answer streams back through [`ProxyBody`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::backend::{BackendBody, BackendError};
use crate::body::{CallLog, ProxyBody};
use crate::handler::State;
use crate::request_body::SanitizedBody;
use crate::routes::Route;
use crate::settings::BackendUrl;
use crate::wire::Rejection;
use crate::{headers, stream};
use futures::future::Either;
use http::{Request, Response};

/// Sends the call to the backend and returns its answer, or the proxy's when the backend is
/// unreachable, the deadline passes first (the shorter of the caller's `grpc-timeout` and the
/// method's `backend.rules[].deadline`), or the stream goes idle.
///
/// The call is handed to the backend connection here; the future returned only waits for the
/// answer. It is not an `async fn`: every call in flight holds this future, and an `async fn`
/// keeps its arguments (the request's parts and body) for its whole life, twice (rustc).
pub(crate) fn forward(
    state: &Arc<State>,
    route: &Route,
    mut parts: http::request::Parts,
    body: SanitizedBody,
    log: CallLog,
) -> impl Future<Output = Response<ProxyBody>> + Send + use<> {
    let timeouts = route.timeouts;
    let client_timeout = parts
        .headers
        .get("grpc-timeout")
        .and_then(|v| parse_grpc_timeout(v.as_bytes()));
    let deadline = stream::effective_deadline(client_timeout, timeouts.deadline)
        .map(|d| tokio::time::Instant::now() + d);
    parts.uri = match backend_uri(&state.backend_url, &parts.uri) {
        Some(uri) => uri,
        // Unreachable for a path that matched a route; answered rather than assumed.
        None => {
            return Either::Left(std::future::ready(
                Rejection::UndefinedMethod.into_response(true, log),
            ));
        }
    };
    let activity = stream::CallActivity::new(timeouts.idle);
    let body = activity.watch_request(body);
    let bound = activity.bound(
        deadline,
        state.backend.send(Request::from_parts(parts, body)),
    );
    Either::Right(Forwarding {
        bound,
        call: Some(Waiting { activity, log }),
        state: Arc::clone(state),
    })
}

pin_project_lite::pin_project! {
    /// A forwarded call waiting for the backend's response headers.
    struct Forwarding<F> {
        #[pin]
        bound: stream::Bound<F>,
        // Taken when the answer comes.
        call: Option<Waiting>,
        state: Arc<State>,
    }
}

struct Waiting {
    activity: stream::CallActivity,
    log: CallLog,
}

impl<F> Future for Forwarding<F>
where
    F: Future<Output = Result<Response<BackendBody>, BackendError>>,
{
    type Output = Response<ProxyBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Polled again after its answer: it has none left to give.
        let Some(call) = this.call.as_ref() else {
            return Poll::Pending;
        };
        let result = ready!(this.bound.as_mut().poll_bound(&call.activity, cx));
        let Some(Waiting { activity, log }) = this.call.take() else {
            return Poll::Pending;
        };
        let result = match result {
            Ok(result) => result,
            Err(rejection) => return Poll::Ready(rejection.into_response(true, log)),
        };
        Poll::Ready(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::sanitize_response(&mut parts.headers);
                let mut log = log;
                log.set_http_status(parts.status);
                let deadline = this.bound.take_deadline();
                let body = ProxyBody::backend(body, &parts.headers, deadline, activity, log);
                Response::from_parts(parts, body)
            }
            Err(err) => {
                let state = &**this.state;
                let reason = if err.is_connect() {
                    if let Some(metrics) = &state.metrics {
                        metrics.backend_connect_failures.inc();
                    }
                    "connection failure"
                } else {
                    "remote reset"
                };
                tracing::warn!(error = %DisplayChain(&err), backend = %state.backend_url.authority, "backend call failed");
                Rejection::BackendUnavailable(reason).into_response(true, log)
            }
        })
    }
}

/// The caller's path and query on the backend's scheme and authority.
fn backend_uri(backend: &BackendUrl, uri: &http::Uri) -> Option<http::Uri> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(backend.scheme());
    parts.authority = Some(backend.authority.clone());
    parts.path_and_query = uri.path_and_query().cloned();
    http::Uri::from_parts(parts).ok()
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn the_backend_uri_keeps_path_and_query() {
        let backend: BackendUrl = "grpcs://backend:8443".parse().unwrap();
        let uri: http::Uri = "http://client-chosen:1/p.S/M?key=k".parse().unwrap();
        assert_eq!(
            backend_uri(&backend, &uri).unwrap().to_string(),
            "https://backend:8443/p.S/M?key=k"
        );
    }

    /// The spec's grammar: `TimeoutValue TimeoutUnit`, 1 to 8 digits, one of `HMSmun`.
    fn in_grammar(value: &[u8]) -> bool {
        match value.split_last() {
            Some((unit, digits)) => {
                b"HMSmun".contains(unit)
                    && (1..=8).contains(&digits.len())
                    && digits.iter().all(u8::is_ascii_digit)
            }
            None => false,
        }
    }

    proptest! {
        #[test]
        fn grpc_timeout_accepts_exactly_the_grammar(value in proptest::collection::vec(any::<u8>(), 0..12)) {
            prop_assert_eq!(parse_grpc_timeout(&value).is_some(), in_grammar(&value));
        }

        #[test]
        fn grpc_timeout_near_the_grammar(value in "[0-9]{0,10}[HMSmunhsx]?") {
            prop_assert_eq!(parse_grpc_timeout(value.as_bytes()).is_some(), in_grammar(value.as_bytes()));
        }

        #[test]
        fn grpc_timeout_values_are_exact(n in 0u64..100_000_000, unit in "[HMSmun]") {
            let want = match unit.as_str() {
                "H" => Duration::from_secs(n * 3600),
                "M" => Duration::from_secs(n * 60),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                _ => Duration::from_nanos(n),
            };
            prop_assert_eq!(parse_grpc_timeout(format!("{n}{unit}").as_bytes()), Some(want));
        }
    }
}
