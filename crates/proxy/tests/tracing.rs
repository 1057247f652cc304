//! Tracing end to end (`--otlp-endpoint`): an OTLP/HTTP receiver started by the test
//! (`testkit::otlp`, decoding with `opentelemetry-proto`) gets one span per call; the caller's
//! `traceparent` is continued and the context reaches the echo backend (which echoes the
//! headers it received as `echo-…`). Real sockets throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use echo::pb::EchoRequest;
use keysets::test_server::{KeyServer as JwksServer, Reply as JwksReply, jwks as jwks_json};
use proxy::{ProxySettings, TracingSettings};
use testkit::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use tonic::{Code, Request};

const WAIT: Duration = Duration::from_secs(20);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SERVICE: &str = "echo.example.com";

fn traced(backend: std::net::SocketAddr, receiver: &OtlpReceiver, rate: f64) -> ProxySettings {
    let mut settings = settings(backend);
    let mut tracing = TracingSettings::new(receiver.url().parse().unwrap());
    tracing.sample_rate = rate;
    tracing.scheduled_delay = Duration::from_millis(50);
    settings.tracing = Some(tracing);
    settings
}

/// What one call returned, and the trace headers the backend received.
struct Reply {
    code: Code,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

async fn unary(url: String, metadata: &[(&'static str, &str)]) -> Reply {
    let mut client = echo_client(url).await;
    let mut request = Request::new(EchoRequest::default());
    for (name, value) in metadata {
        request.metadata_mut().append(*name, value.parse().unwrap());
    }
    match client.unary(request).await {
        Ok(response) => {
            let echoed = |name: &str| {
                response
                    .metadata()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            Reply {
                code: Code::Ok,
                traceparent: echoed("echo-traceparent"),
                tracestate: echoed("echo-tracestate"),
            }
        }
        Err(status) => Reply {
            code: status.code(),
            traceparent: None,
            tracestate: None,
        },
    }
}

/// `00-TRACE-SPAN-FLAGS` → (trace, span, flags).
fn fields(traceparent: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1], parts[2], parts[3])
}

/// Stops the proxy (drain, then the final export) and returns every span it exported.
async fn stop_and_collect(proxy: RunningProxy, receiver: &OtlpReceiver) -> Vec<ReceivedSpan> {
    assert!(proxy.shutdown().await.unwrap(), "calls still in flight");
    receiver.spans()
}

#[tokio::test]
async fn each_call_is_one_span_continuing_the_callers_trace_and_passed_to_the_backend() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    // Sample rate 0: only the caller's `sampled` flag can make these calls traced.
    let proxy = RunningProxy::start(&echo_config(), traced(backend.addr(), &receiver, 0.0)).await;

    let mut backend_spans = Vec::new();
    for i in 0..3u8 {
        let trace = format!("{TRACE_ID:.30}{i:02x}");
        let incoming = format!("00-{trace}-{PARENT_ID}-01");
        let reply = unary(
            proxy.url(),
            &[
                ("traceparent", &incoming),
                ("tracestate", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"),
            ],
        )
        .await;
        assert_eq!(reply.code, Code::Ok);
        // The backend got the same trace, with the proxy's span as the parent, sampled.
        let forwarded = reply.traceparent.expect("the backend got no traceparent");
        let (trace_id, span_id, flags) = fields(&forwarded);
        assert_eq!(trace_id, trace);
        assert_ne!(span_id, PARENT_ID);
        assert_eq!(flags, "01");
        // tracestate passed on (the blank after the comma is the header's, not a member's).
        assert_eq!(
            reply.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        backend_spans.push((trace, span_id.to_owned()));
    }

    let spans = stop_and_collect(proxy, &receiver).await;
    assert_eq!(spans.len(), 3, "one span per call: {spans:?}");
    for (trace, span_id) in backend_spans {
        let span = spans
            .iter()
            .find(|s| s.trace_id() == trace)
            .unwrap_or_else(|| panic!("no span of trace {trace}: {spans:?}"));
        assert_eq!(span.span_id(), span_id, "the backend's parent is the span");
        assert_eq!(span.parent_span_id(), PARENT_ID);
        assert_eq!(span.span.kind, SpanKind::Server as i32);
        assert_eq!(span.span.name, "esprit.echo.v1.Echo/Unary");
        assert_eq!(span.service_name.as_deref(), Some(SERVICE));
        assert_eq!(
            span.span.trace_state,
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        assert_eq!(
            span.str_attr("esprit.selector"),
            Some("esprit.echo.v1.Echo.Unary")
        );
        assert_eq!(span.str_attr("rpc.system"), Some("grpc"));
        assert_eq!(span.str_attr("rpc.service"), Some("esprit.echo.v1.Echo"));
        assert_eq!(span.str_attr("rpc.method"), Some("Unary"));
        assert_eq!(span.int_attr("rpc.grpc.status_code"), Some(0));
        assert_eq!(span.str_attr("esprit.grpc_status"), Some("OK"));
        assert_eq!(span.int_attr("http.response.status_code"), Some(200));
        assert_eq!(span.str_attr("esprit.auth.outcome"), Some("not_required"));
        assert_eq!(span.bool_attr("esprit.rejected"), Some(false));
        assert!(span.int_attr("esprit.auth.duration_us").is_some());
        assert!(span.int_attr("esprit.backend.duration_us").is_some());
        assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
    }
}

fn mint(key: &jose::GeneratedKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "client@example.com", "sub": "1", "aud": SERVICE, "iat": now, "exp": now + 3600
    });
    key.signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap()
}

#[tokio::test]
async fn the_auth_outcome_is_on_the_span_and_rejected_and_undefined_calls_are_traced_too() {
    let receiver = OtlpReceiver::start().await;
    let jwks = JwksServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    jwks.set("/jwks", JwksReply::json(jwks_json(&[("k1", &key)])));
    let config = echo_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: consumer
    issuer: client@example.com
    jwks_uri: {}
  rules:
  - selector: esprit.echo.v1.Echo.Unary
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#,
        jwks.url("/jwks")
    ));
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&config, traced(backend.addr(), &receiver, 1.0)).await;

    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let reply = unary(proxy.url(), &[("traceparent", &incoming)]).await;
    assert_eq!(reply.code, Code::Unauthenticated);
    let undefined = raw_grpc_call(proxy.addr, "/not.an.Api/Call", &[]).await;
    assert_eq!(undefined.grpc_status(), Some(Code::Unimplemented as i32));
    let allowed_trace = format!("{TRACE_ID:.31}a");
    let token = format!("Bearer {}", mint(&key));
    let reply = unary(
        proxy.url(),
        &[
            ("traceparent", &format!("00-{allowed_trace}-{PARENT_ID}-01")),
            ("authorization", &token),
        ],
    )
    .await;
    assert_eq!(reply.code, Code::Ok);

    let spans = stop_and_collect(proxy, &receiver).await;
    assert_eq!(spans.len(), 3, "{spans:?}");
    let allowed = spans
        .iter()
        .find(|s| s.trace_id() == allowed_trace)
        .unwrap();
    assert_eq!(allowed.str_attr("esprit.auth.outcome"), Some("allowed"));
    assert_eq!(allowed.str_attr("esprit.auth.failed_check"), None);
    assert!(allowed.int_attr("esprit.auth.duration_us").is_some());
    assert!(allowed.int_attr("esprit.backend.duration_us").is_some());
    assert_eq!(allowed.span.status.as_ref().map_or(0, |s| s.code), 0);
    let rejected = spans.iter().find(|s| s.trace_id() == TRACE_ID).unwrap();
    assert_eq!(rejected.parent_span_id(), PARENT_ID);
    assert_eq!(rejected.span.name, "esprit.echo.v1.Echo/Unary");
    assert_eq!(
        rejected.int_attr("rpc.grpc.status_code"),
        Some(Code::Unauthenticated as i64)
    );
    assert_eq!(rejected.str_attr("esprit.auth.outcome"), Some("rejected"));
    assert_eq!(
        rejected.str_attr("esprit.auth.failed_check"),
        Some("extract")
    );
    assert_eq!(rejected.bool_attr("esprit.rejected"), Some(true));
    assert!(rejected.int_attr("esprit.auth.duration_us").is_some());
    assert_eq!(rejected.int_attr("esprit.backend.duration_us"), None);
    // A caller's mistake leaves the span's status unset (semantic conventions).
    assert_eq!(rejected.span.status.as_ref().map_or(0, |s| s.code), 0);

    // A path that is no method: a root span (no traceparent sent), named after the HTTP method,
    // with no method attributes (nothing the client chose).
    let undefined = spans
        .iter()
        .find(|s| s.trace_id() != TRACE_ID && s.trace_id() != allowed_trace)
        .unwrap();
    assert_eq!(undefined.parent_span_id(), "");
    assert_eq!(undefined.span.name, "POST");
    assert_eq!(undefined.str_attr("esprit.selector"), None);
    assert_eq!(
        undefined.int_attr("rpc.grpc.status_code"),
        Some(Code::Unimplemented as i64)
    );
    assert_eq!(undefined.int_attr("http.response.status_code"), Some(404));
    assert_eq!(undefined.str_attr("esprit.auth.outcome"), None);
    // UNIMPLEMENTED is a server-side code: the span is an error.
    assert_eq!(undefined.span.status.as_ref().map(|s| s.code), Some(2));
}

#[tokio::test]
async fn unsampled_calls_export_nothing_but_still_pass_the_context_on() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), traced(backend.addr(), &receiver, 0.0)).await;

    // No traceparent, rate 0: a new, unsampled trace.
    let reply = unary(proxy.url(), &[]).await;
    assert_eq!(reply.code, Code::Ok);
    let (trace, span, flags) = fields(reply.traceparent.as_deref().unwrap());
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(span, "0".repeat(16));
    assert_eq!(flags, "00");

    // The caller's trace, unsampled: continued, still unsampled (its flag is followed).
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    let reply = unary(proxy.url(), &[("traceparent", &incoming)]).await;
    let (trace, span, flags) = fields(reply.traceparent.as_deref().unwrap());
    assert_eq!((trace, flags), (TRACE_ID, "00"));
    assert_ne!(span, PARENT_ID);

    let spans = stop_and_collect(proxy, &receiver).await;
    assert!(spans.is_empty(), "{spans:?}");
}

#[tokio::test]
async fn a_caller_that_does_not_sample_is_followed_even_at_rate_1() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), traced(backend.addr(), &receiver, 1.0)).await;
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-00");
    let reply = unary(proxy.url(), &[("traceparent", &incoming)]).await;
    assert_eq!(fields(reply.traceparent.as_deref().unwrap()).2, "00");
    // Without a traceparent, rate 1 samples.
    let reply = unary(proxy.url(), &[]).await;
    let (fresh, _, flags) = fields(reply.traceparent.as_deref().unwrap());
    assert_eq!(flags, "01");
    let fresh = fresh.to_owned();
    let spans = stop_and_collect(proxy, &receiver).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].trace_id(), fresh);
    assert_eq!(spans[0].parent_span_id(), "");
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), traced(backend.addr(), &receiver, 1.0)).await;
    let malformed = [
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        format!("00-{TRACE_ID}-{PARENT_ID}-01-extra"),
    ];
    let mut forwarded = Vec::new();
    for value in &malformed {
        let reply = unary(
            proxy.url(),
            &[("traceparent", value), ("tracestate", "rojo=1")],
        )
        .await;
        assert_eq!(reply.code, Code::Ok, "{value}");
        let (trace, _, flags) = fields(reply.traceparent.as_deref().unwrap());
        assert_ne!(trace, TRACE_ID, "{value}");
        assert_ne!(trace, TRACE_ID.to_uppercase(), "{value}");
        assert_eq!(flags, "01", "rate 1 samples the new trace");
        // tracestate belongs to the traceparent it came with: dropped with it.
        assert_eq!(reply.tracestate, None, "{value}");
        forwarded.push(trace.to_owned());
    }
    let spans = stop_and_collect(proxy, &receiver).await;
    assert_eq!(spans.len(), malformed.len(), "{spans:?}");
    for span in &spans {
        assert_eq!(span.parent_span_id(), "", "a new trace has no parent");
        assert!(forwarded.contains(&span.trace_id()));
    }
}

#[tokio::test]
async fn spans_queued_at_shutdown_are_exported_before_the_proxy_exits() {
    let receiver = OtlpReceiver::start().await;
    let backend = start_echo().await;
    let mut settings = traced(backend.addr(), &receiver, 1.0);
    // No export on the timer during this test: only the shutdown's flush sends.
    settings.tracing.as_mut().unwrap().scheduled_delay = Duration::from_secs(3600);
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    for _ in 0..3 {
        assert_eq!(unary(proxy.url(), &[]).await.code, Code::Ok);
    }
    assert!(receiver.spans().is_empty());
    let spans = stop_and_collect(proxy, &receiver).await;
    assert_eq!(spans.len(), 3, "{spans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_collector_neither_slows_calls_nor_holds_the_shutdown() {
    let receiver = OtlpReceiver::stalled().await;
    let backend = start_echo().await;
    let mut settings = traced(backend.addr(), &receiver, 1.0);
    let tracing = settings.tracing.as_mut().unwrap();
    tracing.max_queue_size = 4;
    tracing.scheduled_delay = Duration::from_millis(10);
    tracing.export_timeout = Duration::from_secs(60);
    tracing.flush_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    // The exporter is stuck on its first request; the queue fills at 4, and then spans are
    // dropped: 100 calls finish as if there were no tracing.
    let started = Instant::now();
    let mut client = echo_client(proxy.url()).await;
    for _ in 0..100 {
        let reply = tokio::time::timeout(WAIT, client.unary(EchoRequest::default()))
            .await
            .expect("a call waited for the span exporter");
        reply.unwrap();
    }
    assert!(started.elapsed() < WAIT);
    // The flush at shutdown gives up after its bound.
    let stopping = Instant::now();
    let stopped = tokio::time::timeout(WAIT, proxy.shutdown()).await;
    assert!(
        stopped
            .expect("the shutdown waited for the collector")
            .unwrap()
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn without_an_otlp_endpoint_trace_headers_pass_through_untouched() {
    let (_backend, proxy) = echo_stack().await;
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let reply = unary(
        proxy.url(),
        &[("traceparent", &incoming), ("tracestate", "Not=Checked")],
    )
    .await;
    assert_eq!(reply.traceparent.as_deref(), Some(incoming.as_str()));
    assert_eq!(reply.tracestate.as_deref(), Some("Not=Checked"));
}
