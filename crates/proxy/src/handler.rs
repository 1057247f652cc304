//! One call, as a list of steps: sanitize → (trace) → route → protocol → authenticate (JWT) →
//! API key → forward → log. Each step is a module with one job; a new capability is a new step here, not
//! one more branch.

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
use crate::routes::{Route, RouteTable};
use crate::settings::BackendUrl;
use crate::wire::Rejection;
use crate::{drain, forward, headers, protocol};

/// Everything a call needs, shared by all connections.
pub(crate) struct State {
    /// The table in force; a reload swaps in a new one ([`crate::Reloader`]). A call keeps the
    /// `Arc<Route>` it was routed with until it ends.
    pub routes: arc_swap::ArcSwap<RouteTable>,
    pub backend: BackendPool,
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
}

pub(crate) async fn handle(
    state: Arc<State>,
    peer: headers::Peer,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // log: one access-log line, written when the response body ends (`CallLog`'s drop).
    let mut log = CallLog::new(peer.addr, Instant::now(), &state.rejected_lines);
    let (mut parts, body) = request.into_parts();
    // sanitize: before anything reads the headers, forged copies of what we vouch for go, and
    // the forwarding headers become the proxy's own.
    headers::sanitize_request(&mut parts.headers);
    let client = headers::set_forwarding(
        &mut parts.headers,
        parts.uri.authority(),
        &peer,
        state.forwarding,
    );
    log.set_client(client);
    if state.healthz.as_deref() == Some(parts.uri.path()) {
        return Ok(health_response(&state, log));
    }
    // trace (with `--otlp-endpoint`): the call's span, continuing the caller's W3C context.
    if let Some(tracing) = &state.tracing {
        log.set_trace(tracing.start(&parts.headers, &parts.method));
    }
    match check(&state, &mut parts, &mut log).await {
        Ok(route) => {
            log.begin_backend_phase(&mut parts.headers);
            Ok(forward::forward(&state, &route, parts, body, log).await)
        }
        Err(rejection) => {
            drain::drain(body, drain::MAX_DRAIN_BYTES, drain::MAX_DRAIN_WAIT).await;
            let grpc = headers::is_grpc(&parts.headers);
            Ok(rejection.into_response(grpc, log))
        }
    }
}

/// route → protocol → authenticate (JWT) → API key. Protocol comes before any credential work:
/// a call that can never be served must not cost a signature check or a key-server request, nor
/// tell its sender whether a credential is valid. JWT before API key: ESPv2's filter order.
async fn check(
    state: &State,
    parts: &mut http::request::Parts,
    log: &mut CallLog,
) -> Result<Arc<Route>, Rejection> {
    let route = state.routes.load().route(parts.uri.path(), log)?.clone();
    protocol::require_grpc(parts)?;
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
