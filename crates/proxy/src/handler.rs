//! One call, as a list of steps: sanitize → CORS → (trace) → route → protocol → authenticate
//! (JWT) → API key → forward (or, for the reflection routes of `--reflection`, answered here) →
//! log. Each step is a module with one job; a new capability is a new step here, not one more
//! branch.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access_log::RejectedLines;
use crate::backend::BackendPool;
use crate::body::{CallLog, ProxyBody};
use crate::call_trace::AuthOutcome;
use crate::protocol::{Protocol, ResponseBody};
use crate::routes::{Route, RouteTable};
use crate::settings::BackendUrl;
use crate::wire::Rejection;
use crate::workers::PerWorker;
use crate::{cors, drain, forward, headers, reflection};

/// Everything a call needs, shared by all connections.
pub(crate) struct State {
    /// The table in force; a reload swaps in a new one ([`crate::Reloader`]). A call keeps the
    /// `Arc<Route>` it was routed with until it ends.
    pub routes: arc_swap::ArcSwap<RouteTable>,
    /// The calling worker's own pool ([`crate::workers::PerWorker`]).
    pub backend: PerWorker<Arc<BackendPool>>,
    pub backend_url: BackendUrl,
    pub healthz: Option<String>,
    pub draining: AtomicBool,
    pub forwarding: headers::Forwarding,
    pub rejected_lines: Arc<RejectedLines>,
    /// With `--admin-listen`.
    pub metrics: Option<Arc<crate::metrics::ProxyMetrics>>,
    /// With `--health-check-grpc-backend`: the last check's verdict.
    pub backend_health: Option<Arc<crate::health::BackendHealth>>,
    /// With `--otlp-endpoint`: spans, and the trace context passed on.
    pub tracing: Option<crate::call_trace::Tracing>,
    /// With `--cors-preset`.
    pub cors: Option<cors::CorsPolicy>,
    /// The service config's `endpoints[].allow_cors`: preflights go to the backend.
    pub preflight_to_backend: bool,
}

/// One call's future. Boxed (hyper spawns a task per stream holding it, and tokio moves a
/// task's future by value several times: a pointer moves cheaply, the call's state would be
/// copied), and of the size of the branch taken: a preflight's or a health check's state is
/// not part of every gRPC call's.
type CallFuture = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// The steps up to the first that can wait run here, before the call's future is made: that
/// future then holds only what the later steps need (an `async fn` would keep its arguments,
/// the whole request, for the call's life, twice). An opaque type rather than [`CallFuture`]
/// itself: with the boxed `dyn` type rustc cannot prove the connection task `Send`.
pub(crate) fn handle(
    state: &Arc<State>,
    peer: &headers::Peer,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + use<> {
    start(state, peer, request)
}

fn start(state: &Arc<State>, peer: &headers::Peer, request: Request<Incoming>) -> CallFuture {
    // log: one access-log line, written when the response body ends (`CallLog`'s drop).
    let mut log = CallLog::new(peer.addr, Instant::now(), &state.rejected_lines);
    let (mut parts, body) = request.into_parts();
    sanitize(state, peer, &mut parts, &mut log);
    if state.healthz.as_deref() == Some(parts.uri.path()) {
        return Box::pin(std::future::ready(Ok(
            health_response(state, log).map(ResponseBody::Grpc)
        )));
    }
    // CORS: a preflight is answered here, before any credential is looked at (it carries none);
    // every other answer, rejections included, gets the headers that let the page read it.
    let cors = match cors::step(
        state.cors.as_ref(),
        state.preflight_to_backend,
        &parts.method,
        &parts.headers,
    ) {
        cors::Step::Proceed(cors) => cors,
        cors::Step::End(preflight) => {
            let state = Arc::clone(state);
            return Box::pin(async move {
                Ok(answer_preflight(&state, preflight, parts, body, log).await)
            });
        }
    };
    // trace (with `--otlp-endpoint`): the call's span, continuing the caller's W3C context.
    if let Some(tracing) = &state.tracing {
        log.set_trace(tracing.start(&parts.headers, &parts.method));
    }
    let protocol = Protocol::detect(&parts);
    // The CORS headers boxed: most proxies have none, and every call in flight holds the option.
    let cors = cors.map(Box::new);
    Box::pin(call(Arc::clone(state), parts, body, log, protocol, cors))
}

/// The steps that can wait: check, then serve (or refuse) and answer in the caller's protocol.
/// Combinators, not one `async` block: a block keeps what it captured (the request's parts and
/// the call's log) beside the later steps' state, and rustc keeps a moved-from local's place
/// until its scope ends; chained, each step's state takes the place of the one before it.
fn call(
    state: Arc<State>,
    parts: http::request::Parts,
    body: Incoming,
    log: CallLog,
    protocol: Protocol,
    cors: Option<Box<http::HeaderMap>>,
) -> impl Future<Output = Answer> + Send {
    checked(state, parts, protocol, log).then(move |checked| serve(checked, body, cors))
}

/// sanitize: before anything reads the headers, forged copies of what we vouch for go, and the
/// forwarding headers become the proxy's own.
fn sanitize(
    state: &State,
    peer: &headers::Peer,
    parts: &mut http::request::Parts,
    log: &mut CallLog,
) {
    headers::sanitize_request(&mut parts.headers);
    let client = headers::set_forwarding(
        &mut parts.headers,
        parts.uri.authority(),
        peer,
        state.forwarding,
    );
    log.set_client(client);
}

/// What a call's future gives hyper.
type Answer = Result<Response<ResponseBody>, Infallible>;

/// A call after its checks: what it owned, and the verdict.
struct Checked {
    state: Arc<State>,
    parts: http::request::Parts,
    protocol: Protocol,
    log: CallLog,
    verdict: Result<Arc<Route>, Rejection>,
}

#[allow(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice; this block, once"
)]
fn checked(
    state: Arc<State>,
    mut parts: http::request::Parts,
    mut protocol: Protocol,
    mut log: CallLog,
) -> impl Future<Output = Checked> + Send {
    async move {
        let verdict = check(&state, &mut parts, &mut protocol, &mut log).await;
        Checked {
            state,
            parts,
            protocol,
            log,
            verdict,
        }
    }
}

/// A checked call: forwarded (the common path: a gRPC or gRPC-Web call, handed to the backend
/// here, the future holding only the wait for its answer), or refused, or answered from the
/// descriptor (the reflection routes of `--reflection`), or an HTTP/JSON call whose body must
/// be read first; those are boxed.
fn serve(
    checked: Checked,
    body: Incoming,
    cors: Option<Box<http::HeaderMap>>,
) -> Either<impl Future<Output = Answer> + Send, BoxFuture<'static, Answer>> {
    let Checked {
        state,
        mut parts,
        mut protocol,
        mut log,
        verdict,
    } = checked;
    let route = match verdict {
        Ok(route) => route,
        Err(rejection) => {
            return Either::Right(Box::pin(async move {
                drain::drain(body, drain::MAX_DRAIN_BYTES, drain::MAX_DRAIN_WAIT).await;
                let response = rejection.into_response(protocol.answers_in_grpc(), log);
                Ok(with_cors(protocol.respond(response).await, cors))
            }));
        }
    };
    if route.reflection.is_none() {
        log.begin_backend_phase(&mut parts.headers);
    }
    match (protocol.passed_body(body), &route.reflection) {
        (Ok(body), None) => Either::Left(
            forward::forward(&state, &route, parts, body, log)
                .then(move |response| protocol.respond(response))
                .map(move |response| Ok(with_cors(response, cors))),
        ),
        (body, _) => Either::Right(Box::pin(async move {
            let response = match body {
                Ok(body) => Ok(body),
                Err(body) => protocol.request_body(body, route.timeouts.idle).await,
            };
            let response = match (response, &route.reflection) {
                (Err(rejection), _) => rejection.into_response(protocol.answers_in_grpc(), log),
                (Ok(body), Some(reflection)) => {
                    reflection::serve(reflection, parts, body, log).await
                }
                (Ok(body), None) => forward::forward(&state, &route, parts, body, log).await,
            };
            Ok(with_cors(protocol.respond(response).await, cors))
        })),
    }
}

/// The end of a preflight call: answered by the proxy, refused, or passed to the backend.
async fn answer_preflight(
    state: &Arc<State>,
    preflight: cors::Preflight,
    parts: http::request::Parts,
    body: Incoming,
    mut log: CallLog,
) -> Response<ResponseBody> {
    match preflight {
        cors::Preflight::Answer(cors) => {
            log.set_path(parts.uri.path());
            with_cors(preflight_response(log), Some(Box::new(cors)))
        }
        cors::Preflight::Refuse(rejection) => {
            log.set_path(parts.uri.path());
            drain::drain(body, drain::MAX_DRAIN_BYTES, drain::MAX_DRAIN_WAIT).await;
            rejection.into_response(false, log).map(ResponseBody::Grpc)
        }
        cors::Preflight::ToBackend => preflight_to_backend(state, parts, body, log)
            .await
            .map(ResponseBody::Grpc),
    }
}

/// route → protocol → authenticate (JWT) → API key. Protocol comes before any credential work:
/// a call that can never be served must not cost a signature check or a key-server request, nor
/// tell its sender whether a credential is valid. JWT before API key: ESPv2's filter order.
async fn check(
    state: &State,
    parts: &mut http::request::Parts,
    protocol: &mut Protocol,
    log: &mut CallLog,
) -> Result<Arc<Route>, Rejection> {
    let route = state
        .routes
        .load()
        .route_call(parts, protocol, log)?
        .clone();
    protocol.require(parts)?;
    let started = log.trace_clock();
    let verdict = credentials(&route, parts, log).await;
    let outcome = match (&verdict, route.jwt.is_some() || route.api_key.is_some()) {
        (_, false) => AuthOutcome::NotRequired,
        (Ok(()), true) => AuthOutcome::Allowed,
        (Err(_), true) => AuthOutcome::Rejected,
    };
    log.auth_done(started, outcome);
    verdict.map(|()| route)
}

/// authenticate (JWT) → API key, as the route requires.
async fn credentials(
    route: &Route,
    parts: &mut http::request::Parts,
    log: &mut CallLog,
) -> Result<(), Rejection> {
    if let Some(jwt) = &route.jwt {
        jwt.check(parts).await?;
    }
    if let Some(api_key) = &route.api_key {
        api_key.check(parts, log).await?;
    }
    Ok(())
}

/// Adds the CORS step's headers to an answer, replacing a backend's own `Access-Control-*`;
/// `Vary: Origin` is added to what the backend varies on.
fn with_cors(
    mut response: Response<ResponseBody>,
    cors: Option<Box<http::HeaderMap>>,
) -> Response<ResponseBody> {
    if let Some(cors) = cors {
        let mut cors = *cors;
        let vary = cors.remove(http::header::VARY);
        let headers = response.headers_mut();
        headers.extend(cors);
        if let Some(vary) = vary {
            headers.append(http::header::VARY, vary);
        }
    }
    response
}

/// An allowed preflight: 200, no body (Envoy's CORS filter), the headers added by the caller.
/// Answered by the proxy itself, so its log line is rate-limited like a rejection's: a flood of
/// preflights cannot flood the log.
fn preflight_response(mut log: CallLog) -> Response<ResponseBody> {
    log.set_rejected();
    log.set_http_status(StatusCode::OK);
    log.set_status(tonic::Code::Ok);
    Response::new(ResponseBody::Grpc(ProxyBody::empty(log)))
}

/// ESP with `endpoints[].allow_cors: true`: the backend answers preflights to the API's paths,
/// which no credential check applies to (a preflight carries no credential). Only a preflight
/// goes: no body and no `content-type`, so a backend that ignores the method (a gRPC server)
/// cannot be handed a call's message without its checks.
async fn preflight_to_backend(
    state: &Arc<State>,
    mut parts: http::request::Parts,
    body: Incoming,
    mut log: CallLog,
) -> Response<ProxyBody> {
    parts.headers.remove(http::header::CONTENT_TYPE);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let route = match state.routes.load().route(parts.uri.path(), &mut log) {
        Ok(route) => route.clone(),
        Err(rejection) => {
            drain::drain(body, drain::MAX_DRAIN_BYTES, drain::MAX_DRAIN_WAIT).await;
            return rejection.into_response(false, log);
        }
    };
    let body = crate::request_body::SanitizedBody::new(body).emptied();
    forward::forward(state, &route, parts, body, log).await
}

fn health_response(state: &State, mut log: CallLog) -> Response<ProxyBody> {
    let backend_down = state
        .backend_health
        .as_ref()
        .is_some_and(|health| !health.is_healthy());
    let (status, text) = if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"DRAINING\"}")
    } else if backend_down {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"BACKEND_NOT_SERVING\"}",
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, from its type alone.
    fn future_size<A, B, C, D, E, G, F: Future>(_: impl FnOnce(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every call in flight holds its future (boxed) until the backend answers: its size is
    /// memory per stream. It was 4.4 KiB (debug build) when `handle` was an `async fn` holding
    /// the request twice, with the preflight, reflection and HTTP/JSON branches inline, and
    /// 1368 bytes when check and serve were one `async` block (904 chained).
    #[test]
    fn a_calls_future_is_small() {
        let size = future_size(call);
        assert!(size <= 1024, "the call's future is {size} bytes");
    }
}
