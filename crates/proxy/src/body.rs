//! The response body the proxy sends: the backend's frames passed through (with the caller's
//! deadline enforced and the gRPC status observed for the access log), or a body of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::Code;

use crate::access_line::{AccessLine, Outcome};
use crate::access_log::RejectedLines;
use crate::backend::BackendBody;
use crate::call_trace::{AuthOutcome, CallSummary, CallTrace};
use crate::stream::{CallActivity, IdleTimer};
use crate::wire::{StreamEnd, code_name};

/// One access-log line per call, written when the response body is finished or dropped (the
/// client went away). Carries no header values: tokens and keys never reach the log.
#[derive(Debug)]
pub(crate) struct CallLog {
    selector: Option<Arc<str>>,
    path: Option<Box<str>>,
    /// Which authentication check failed, and for which provider (never the token).
    auth_failure: Option<(&'static str, Option<Arc<str>>)>,
    /// `missing`, `valid`, `invalid`, `unchecked`… (never the key).
    api_key: &'static str,
    peer: std::net::SocketAddr,
    /// The client address derived from `x-forwarded-for` and the trusted hops.
    client: Option<std::net::IpAddr>,
    start: Instant,
    status: Option<Code>,
    http_status: u16,
    /// Answered by the proxy itself: the line is subject to `limiter`.
    rejected: bool,
    limiter: Arc<RejectedLines>,
    /// The method's metrics (with `--admin-listen`), recorded when the line is.
    metrics: Option<Arc<crate::metrics::MethodMetrics>>,
    /// The call's span (with `--otlp-endpoint`), ended when the line is written. Boxed: a
    /// call without tracing carries one null pointer.
    trace: Option<Box<CallTrace>>,
}

impl CallLog {
    pub(crate) fn new(
        peer: std::net::SocketAddr,
        start: Instant,
        limiter: &Arc<RejectedLines>,
    ) -> Self {
        Self {
            selector: None,
            path: None,
            auth_failure: None,
            api_key: "",
            peer,
            client: None,
            start,
            status: None,
            http_status: 200,
            rejected: false,
            limiter: Arc::clone(limiter),
            metrics: None,
            trace: None,
        }
    }

    pub(crate) fn set_trace(&mut self, trace: CallTrace) {
        self.trace = Some(Box::new(trace));
    }

    /// Now, when the call is traced; `None` (and no clock read) otherwise.
    pub(crate) fn trace_clock(&self) -> Option<Instant> {
        self.trace.as_ref().map(|_| Instant::now())
    }

    /// The auth phase that began at `started` (from [`Self::trace_clock`]) is over.
    pub(crate) fn auth_done(&mut self, started: Option<Instant>, outcome: AuthOutcome) {
        if let (Some(trace), Some(started)) = (&mut self.trace, started) {
            trace.auth_done(outcome, started.elapsed());
        }
    }

    /// The call goes to the backend: a traced call carries its context there and times the
    /// backend phase from now to the end of the response.
    pub(crate) fn begin_backend_phase(&mut self, headers: &mut HeaderMap) {
        if let Some(trace) = &mut self.trace {
            trace.inject(headers);
            trace.backend_started();
        }
    }

    /// The call is counted under this method's metrics from now until it ends.
    pub(crate) fn set_metrics(&mut self, metrics: Option<&Arc<crate::metrics::MethodMetrics>>) {
        if let Some(metrics) = metrics {
            metrics.started();
            self.metrics = Some(Arc::clone(metrics));
        }
    }

    pub(crate) fn set_client(&mut self, client: std::net::IpAddr) {
        self.client = Some(client);
    }

    /// The proxy answered this call itself: its line is rate-limited.
    pub(crate) fn set_rejected(&mut self) {
        self.rejected = true;
    }

    pub(crate) fn set_selector(&mut self, selector: Arc<str>) {
        self.selector = Some(selector);
    }

    /// For paths that are not methods, so operators can see what was asked for.
    pub(crate) fn set_path(&mut self, path: &str) {
        // Bounded: a path is client input.
        let end = path.char_indices().nth(256).map_or(path.len(), |(i, _)| i);
        self.path = Some(Box::from(&path[..end]));
    }

    pub(crate) fn set_auth_failure(&mut self, err: &authn::AuthError) {
        let provider = err.provider().map(|p| Arc::from(p.as_str()));
        self.auth_failure = Some((err.check_name(), provider));
    }

    pub(crate) fn set_api_key_outcome(&mut self, outcome: &'static str) {
        self.api_key = outcome;
    }

    pub(crate) fn set_status(&mut self, code: Code) {
        self.status = Some(code);
    }

    pub(crate) fn set_http_status(&mut self, status: http::StatusCode) {
        self.http_status = status.as_u16();
    }

    fn observe(&mut self, headers: &HeaderMap) {
        if let Some(code) = grpc_status(headers) {
            self.status = Some(code);
        }
    }
}

/// A constant name: looking up by `&str` parses and validates the name on every lookup.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get(&GRPC_STATUS)?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

impl Drop for CallLog {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        // The span ends with the call, whether or not its line is written.
        let trace_id = self.trace.take().map(|trace| {
            let id = trace.trace_id();
            trace.finish(CallSummary {
                selector: self.selector.as_deref(),
                status: self.status,
                http_status: self.http_status,
                auth_failure: self
                    .auth_failure
                    .as_ref()
                    .map(|(check, provider)| (*check, provider.as_deref())),
                api_key: self.api_key,
                client: self.client,
                rejected: self.rejected,
            });
            id
        });
        if let Some(metrics) = &self.metrics {
            let code = self.status.unwrap_or(Code::Cancelled);
            metrics.finished(code, self.http_status, elapsed);
            if !self.api_key.is_empty() {
                metrics.api_key_outcome(self.api_key);
            }
        }
        if self.rejected && !self.limiter.admit() {
            return;
        }
        let (auth_check, auth_provider) = match &self.auth_failure {
            Some((check, provider)) => (*check, provider.as_deref().unwrap_or("")),
            None => ("", ""),
        };
        crate::access_log::write(&AccessLine {
            selector: self.selector.as_deref().unwrap_or("-"),
            path: self.path.as_deref().unwrap_or(""),
            outcome: self.status.map(|code| Outcome {
                auth_check,
                auth_provider,
                api_key: self.api_key,
                grpc_status: code_name(code),
            }),
            peer: self.peer,
            client: self.client,
            trace_id,
            http_status: self.http_status,
            duration_us: elapsed.as_micros() as u64,
        });
    }
}

enum Kind {
    Backend {
        inner: BackendBody,
        deadline: Option<Pin<Box<Sleep>>>,
        /// Dropped with the body: the call is over, its backend stream is reset if still open.
        idle: IdleTimer,
    },
    Full(Option<Bytes>),
    /// A service the proxy answers itself (reflection).
    Local(tonic::body::Body),
    Done,
}

pub(crate) struct ProxyBody {
    kind: Kind,
    log: CallLog,
}

impl ProxyBody {
    pub(crate) fn empty(log: CallLog) -> Self {
        Self {
            kind: Kind::Done,
            log,
        }
    }

    pub(crate) fn full(bytes: Bytes, log: CallLog) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
            log,
        }
    }

    /// Passes the backend's body through. `headers` are the response headers (a trailers-only
    /// answer has its status there); `deadline` ends the call with `DEADLINE_EXCEEDED` trailers,
    /// and so does `idle` when no frame goes either way for the stream idle timeout.
    pub(crate) fn backend(
        inner: BackendBody,
        headers: &HeaderMap,
        deadline: Option<Pin<Box<Sleep>>>,
        activity: CallActivity,
        mut log: CallLog,
    ) -> Self {
        log.observe(headers);
        Self {
            kind: Kind::Backend {
                inner,
                deadline,
                idle: activity.into_timer(),
            },
            log,
        }
    }

    /// The body of a service the proxy answers itself; `headers` are its response headers.
    pub(crate) fn local(inner: tonic::body::Body, headers: &HeaderMap, mut log: CallLog) -> Self {
        log.observe(headers);
        Self {
            kind: Kind::Local(inner),
            log,
        }
    }

    /// Ends the stream with a status of our own in the trailers.
    fn finish_with(
        &mut self,
        status: tonic::Status,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.kind = Kind::Done;
        self.log.set_status(status.code());
        let mut trailers = HeaderMap::new();
        match status.add_header(&mut trailers) {
            Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Err(_) => Poll::Ready(None),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    // Errors of the backend's stream become gRPC trailers, so the caller always gets a status.
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Done => Poll::Ready(None),
            Kind::Full(bytes) => {
                let frame = bytes.take().map(|b| Ok(Frame::data(b)));
                this.kind = Kind::Done;
                Poll::Ready(frame)
            }
            Kind::Local(inner) => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        this.log.observe(trailers);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(status))) => this.finish_with(status),
                Poll::Ready(None) => {
                    this.kind = Kind::Done;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
            Kind::Backend {
                inner,
                deadline,
                idle,
            } => {
                if let Some(sleep) = deadline
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    // Dropping `inner` resets the backend's stream: it stops working for nobody.
                    return this.finish_with(StreamEnd::DeadlineExceeded.status());
                }
                let frame = match Pin::new(inner).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    // Nothing from the backend: the idle clock runs (a frame that is ready is
                    // activity, so the clock is only looked at when there is none).
                    Poll::Pending if idle.poll_expired(cx) => {
                        return this.finish_with(StreamEnd::IdleTimeout.status());
                    }
                    Poll::Pending => return Poll::Pending,
                };
                match frame {
                    Some(Ok(frame)) => {
                        idle.touch();
                        if let Some(trailers) = frame.trailers_ref() {
                            this.log.observe(trailers);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "backend response stream failed");
                        this.finish_with(StreamEnd::BackendReset.status())
                    }
                    None => {
                        this.kind = Kind::Done;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Done => true,
            Kind::Full(b) => b.is_none(),
            // A trailers-only answer (status in the headers, stream already ended) must reach the
            // client as one HEADERS frame with END_STREAM: grpcio reads a status in headers
            // followed by an empty DATA frame as a missing status (UNKNOWN).
            Kind::Backend { inner, .. } => inner.is_end_stream(),
            Kind::Local(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Done => SizeHint::with_exact(0),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Backend { inner, .. } => inner.size_hint(),
            Kind::Local(inner) => inner.size_hint(),
        }
    }
}
