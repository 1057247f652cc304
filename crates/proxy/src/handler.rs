//! One call, as a list of steps: sanitize → CORS → (trace) → route → protocol → authenticate
//! (JWT) → API key → forward (or, for the reflection routes of `--reflection`, answered here) →
//! log. Each step is a module with one job; a new capability is a new step here, not one more
//! branch.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
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
    pub backend: PerWorker<BackendPool>,
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

pub(crate) async fn handle(
    state: Arc<State>,
    peer: headers::Peer,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    // log: one access-log line, written when the response body ends (`CallLog`'s drop).
    let mut log = CallLog::new(peer.addr, Instant::now(), &state.rejected_lines);
    let (mut parts, body) = request.into_parts();
    sanitize(&state, &peer, &mut parts, &mut log);
    if state.healthz.as_deref() == Some(parts.uri.path()) {
        return Ok(health_response(&state, log).map(ResponseBody::Grpc));
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
            return Ok(answer_preflight(&state, preflight, parts, body, log).await);
        }
    };
    // trace (with `--otlp-endpoint`): the call's span, continuing the caller's W3C context.
    if let Some(tracing) = &state.tracing {
        log.set_trace(tracing.start(&parts.headers, &parts.method));
    }
    let mut protocol = Protocol::detect(&parts);
    let response = match check(&state, &mut parts, &mut protocol, &mut log).await {
        Ok(route) => serve(&state, &route, &mut protocol, parts, body, log).await,
        Err(rejection) => {
            drain::drain(body, drain::MAX_DRAIN_BYTES, drain::MAX_DRAIN_WAIT).await;
            rejection.into_response(protocol.answers_in_grpc(), log)
        }
    };
    Ok(with_cors(protocol.respond(response).await, cors))
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

/// A call that passed its checks: the request body through the protocol's mapping, then forward
/// (or, for the reflection routes of `--reflection`, answered here from the descriptor, never
/// forwarded).
async fn serve(
    state: &State,
    route: &Route,
    protocol: &mut Protocol,
    mut parts: http::request::Parts,
    body: Incoming,
    mut log: CallLog,
) -> Response<ProxyBody> {
    if route.reflection.is_none() {
        log.begin_backend_phase(&mut parts.headers);
    }
    let body = match protocol.request_body(body, route.timeouts.idle).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(protocol.answers_in_grpc(), log),
    };
    match &route.reflection {
        Some(reflection) => reflection::serve(reflection, parts, body, log).await,
        None => forward::forward(state, route, parts, body, log).await,
    }
}

/// The end of a preflight call: answered by the proxy, refused, or passed to the backend.
async fn answer_preflight(
    state: &State,
    preflight: cors::Preflight,
    parts: http::request::Parts,
    body: Incoming,
    mut log: CallLog,
) -> Response<ResponseBody> {
    match preflight {
        cors::Preflight::Answer(cors) => {
            log.set_path(parts.uri.path());
            with_cors(preflight_response(log), Some(cors))
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
    cors: Option<http::HeaderMap>,
) -> Response<ResponseBody> {
    if let Some(mut cors) = cors {
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
    state: &State,
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
