//! Distributed tracing (`--otlp-endpoint`): one server span per call, continuing the caller's
//! W3C trace context (`trace_context`), exported over OTLP/HTTP protobuf by the OpenTelemetry
//! SDK's batch span processor, and the context passed on to the backend.
//!
//! Without `--otlp-endpoint` none of this exists: `State::tracing` is `None`, no header is
//! parsed, no span is made, and a call pays one branch.
//!
//! The span is made when the call arrives (so its id can be sent to the backend) and ended when
//! the call's `CallLog` is dropped, with the facts the access log has. The auth and backend
//! phases are attributes of that one span (`esprit.auth.duration_us`,
//! `esprit.backend.duration_us`), not child spans: one span per call keeps export volume and
//! the per-call cost at one span.

use std::time::{Duration, Instant};

use http::HeaderMap;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use tonic::Code;

use crate::settings::TracingSettings;
use crate::trace_context::{self, TRACEPARENT, TRACESTATE};

/// The proxy's tracer and the provider that owns the export thread.
pub(crate) struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    flush_timeout: Duration,
}

/// The exporter could not be built (an endpoint the HTTP client refuses, no thread).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ExporterError(String);

impl Tracing {
    /// The exporter and batch processor, with `service.name` = the service config's name.
    pub(crate) fn new(
        settings: &TracingSettings,
        service_name: &str,
    ) -> Result<Self, ExporterError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.otlp_endpoint.to_string())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|err| ExporterError(err.to_string()))?;
        // A full queue drops the span (the SDK's `try_send`): export never slows a call.
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .with_max_export_batch_size(settings.max_queue_size.min(512))
            .with_scheduled_delay(settings.scheduled_delay)
            .build();
        let processor = BatchSpanProcessor::new(exporter, batch);
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // The caller's `sampled` flag decides when there is a valid `traceparent`;
            // otherwise the trace id's ratio (ESPv2: `--tracing_sample_rate`).
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_rate,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("esprit-proxy");
        Ok(Self {
            tracer,
            provider,
            flush_timeout: settings.flush_timeout,
        })
    }

    /// The call's span, child of the caller's `traceparent` when it is valid, else the root of
    /// a new trace (a malformed header is not an error). `tracestate` is read only beside a
    /// valid `traceparent`, as the spec requires.
    pub(crate) fn start(&self, headers: &HeaderMap, method: &http::Method) -> CallTrace {
        let incoming = trace_context::parse_traceparent(headers.get_all(TRACEPARENT));
        let (parent, tracestate) = match incoming {
            Some(parent) => {
                let state = trace_context::parse_tracestate(headers.get_all(TRACESTATE));
                let span_state = state
                    .as_ref()
                    .and_then(|s| {
                        TraceState::from_key_value(
                            s.members().iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        )
                        .ok()
                    })
                    .unwrap_or_default();
                let flags = if parent.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                };
                let remote = SpanContext::new(
                    TraceId::from_bytes(parent.trace_id),
                    SpanId::from_bytes(parent.parent_id),
                    flags,
                    true,
                    span_state,
                );
                (
                    Context::new().with_remote_span_context(remote),
                    state.and_then(|s| s.header()),
                )
            }
            None => (Context::new(), None),
        };
        // Renamed to the method when the call is routed; calls that are not methods keep the
        // HTTP method's name (the semantic conventions' fallback).
        let name = match *method {
            http::Method::POST => std::borrow::Cow::Borrowed("POST"),
            ref other => std::borrow::Cow::Owned(other.as_str().to_owned()),
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        CallTrace {
            span,
            tracestate,
            auth: None,
            backend_started: None,
        }
    }

    /// Exports what is queued, for at most the flush timeout (SIGTERM, after the drain), on a
    /// blocking thread: the SDK waits for its export thread.
    pub(crate) async fn shutdown(&self) {
        let provider = self.provider.clone();
        let timeout = self.flush_timeout;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("spans flushed"),
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing spans at shutdown failed"),
            Err(err) => tracing::warn!(error = %err, "flushing spans at shutdown failed"),
        }
    }
}

/// What the auth phase (JWT, API key) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// The method asks for no credential.
    NotRequired,
    Allowed,
    Rejected,
}

impl AuthOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::NotRequired => "not_required",
            AuthOutcome::Allowed => "allowed",
            AuthOutcome::Rejected => "rejected",
        }
    }
}

/// One call's span, from its arrival to the end of its response.
pub(crate) struct CallTrace {
    span: opentelemetry_sdk::trace::Span,
    /// The caller's `tracestate`, checked and bounded, passed on as is.
    tracestate: Option<http::HeaderValue>,
    auth: Option<(AuthOutcome, Duration)>,
    backend_started: Option<Instant>,
}

impl std::fmt::Debug for CallTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTrace")
            .field("context", self.span.span_context())
            .finish_non_exhaustive()
    }
}

/// What the access log knows when the call ends, for the span's attributes.
pub(crate) struct CallSummary<'a> {
    pub selector: Option<&'a str>,
    pub status: Option<Code>,
    pub http_status: u16,
    /// The JWT check that failed and its provider.
    pub auth_failure: Option<(&'static str, Option<&'a str>)>,
    pub api_key: &'static str,
    pub client: Option<std::net::IpAddr>,
    /// Answered by the proxy itself.
    pub rejected: bool,
}

impl CallTrace {
    pub(crate) fn trace_id(&self) -> TraceId {
        self.span.span_context().trace_id()
    }

    /// The context for the backend: `traceparent` with this call's span as the parent (and the
    /// sampling decision), `tracestate` as checked, or none. The client's copies are replaced.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        let context = self.span.span_context();
        headers.insert(
            TRACEPARENT,
            trace_context::format_traceparent(
                context.trace_id().to_bytes(),
                context.span_id().to_bytes(),
                context.is_sampled(),
            ),
        );
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }

    pub(crate) fn auth_done(&mut self, outcome: AuthOutcome, took: Duration) {
        self.auth = Some((outcome, took));
    }

    pub(crate) fn backend_started(&mut self) {
        self.backend_started = Some(Instant::now());
    }

    /// Ends the span with the call's facts. Unsampled spans record nothing and export nothing.
    pub(crate) fn finish(mut self, call: CallSummary<'_>) {
        if !self.span.is_recording() {
            return;
        }
        let span = &mut self.span;
        if let Some(selector) = call.selector {
            // `pkg.Service.Method` → the semantic conventions' `pkg.Service/Method`.
            if let Some((service, method)) = selector.rsplit_once('.') {
                span.update_name(format!("{service}/{method}"));
                span.set_attribute(KeyValue::new("rpc.service", service.to_owned()));
                span.set_attribute(KeyValue::new("rpc.method", method.to_owned()));
            }
            span.set_attribute(KeyValue::new("esprit.selector", selector.to_owned()));
        }
        span.set_attribute(KeyValue::new("rpc.system", "grpc"));
        let code = call.status.unwrap_or(Code::Cancelled);
        span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        span.set_attribute(KeyValue::new(
            "esprit.grpc_status",
            crate::wire::code_name(code),
        ));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(call.http_status),
        ));
        span.set_attribute(KeyValue::new("esprit.rejected", call.rejected));
        if let Some(client) = call.client {
            span.set_attribute(KeyValue::new("client.address", client.to_string()));
        }
        if let Some((outcome, took)) = self.auth {
            span.set_attribute(KeyValue::new("esprit.auth.outcome", outcome.as_str()));
            span.set_attribute(KeyValue::new("esprit.auth.duration_us", micros(took)));
        }
        if let Some((check, provider)) = call.auth_failure {
            span.set_attribute(KeyValue::new("esprit.auth.failed_check", check));
            if let Some(provider) = provider {
                span.set_attribute(KeyValue::new("esprit.auth.provider", provider.to_owned()));
            }
        }
        if !call.api_key.is_empty() {
            span.set_attribute(KeyValue::new("esprit.api_key", call.api_key));
        }
        if let Some(started) = self.backend_started {
            span.set_attribute(KeyValue::new(
                "esprit.backend.duration_us",
                micros(started.elapsed()),
            ));
        }
        if is_server_error(code) {
            span.set_status(Status::error(crate::wire::code_name(code)));
        }
        span.end();
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The semantic conventions' gRPC server codes that mark a span as failed; the others (a
/// caller's mistake: `UNAUTHENTICATED`, `NOT_FOUND`…) leave the status unset.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}
