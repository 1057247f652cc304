//! What a client may hold open, and for how long (issue 9, items 7–9), over real sockets: raw TCP
//! for silent sockets and partial prefaces, the `h2` crate as client and as backend for what a
//! gRPC client cannot express (streams left open, streams reset once forwarded).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{
    RunningProxy, answers_get, connect_from, echo_client, echo_config, echo_service, listener,
    peer_closes, settings, start_echo,
};
use h2::{Reason, RecvStream, SendStream};
use http::{Request, Response};
use service_config::ServiceConfig;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Generous bound for things that must happen (a loaded CI machine).
const SOON: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// A backend speaking raw HTTP/2 (the `h2` server): counts streams and resets, answers as told.

#[derive(Clone, Copy)]
enum Behaviour {
    /// Never answers.
    Silent,
    /// Response headers, then nothing.
    HeadersThenSilent,
    /// Response headers, then one empty message every `.0` for `.1` messages, then nothing.
    Ticks(Duration, usize),
}

struct H2Backend {
    addr: SocketAddr,
    streams: Arc<AtomicUsize>,
    resets: Arc<AtomicUsize>,
}

impl H2Backend {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = listener().await;
        let addr = listener.local_addr().unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let resets = Arc::new(AtomicUsize::new(0));
        let (s, r) = (streams.clone(), resets.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, respond))) = conn.accept().await {
                        s.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(serve_stream(behaviour, request, respond, r.clone()));
                    }
                });
            }
        });
        Self {
            addr,
            streams,
            resets,
        }
    }

    fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }
}

async fn serve_stream(
    behaviour: Behaviour,
    request: Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    resets: Arc<AtomicUsize>,
) {
    // Held, unread, for the stream's life.
    let _body = request.into_body();
    let grpc_headers = || {
        Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    };
    let reset = match behaviour {
        Behaviour::Silent => std::future::poll_fn(|cx| respond.poll_reset(cx)).await,
        Behaviour::HeadersThenSilent => {
            let mut send = respond.send_response(grpc_headers(), false).unwrap();
            std::future::poll_fn(|cx| send.poll_reset(cx)).await
        }
        Behaviour::Ticks(every, n) => {
            let mut send = respond.send_response(grpc_headers(), false).unwrap();
            for _ in 0..n {
                // Real time: the backend's frames cross real sockets to the proxy's idle timer.
                tokio::time::sleep(every).await;
                if send
                    .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
                    .is_err()
                {
                    break;
                }
            }
            std::future::poll_fn(|cx| send.poll_reset(cx)).await
        }
    };
    if reset.is_ok() {
        resets.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 client.

struct H2Client {
    addr: SocketAddr,
    send: h2::client::SendRequest<Bytes>,
    conn: JoinHandle<Result<(), h2::Error>>,
}

impl H2Client {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        Self {
            addr,
            send,
            conn: tokio::spawn(conn),
        }
    }

    /// Opens a gRPC call to `method` of the echo service, its request stream left open.
    async fn open(
        &mut self,
        method: &str,
    ) -> Result<(h2::client::ResponseFuture, SendStream<Bytes>), h2::Error> {
        let request = Request::post(format!("http://{}/esprit.echo.v1.Echo/{method}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = self.send.clone().ready().await?;
        ready.send_request(request, false)
    }

    /// Whether the proxy closed the connection within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        timeout(within, &mut self.conn).await.is_ok()
    }
}

/// `grpc-status` and `grpc-message` (spaces decoded) of a call, trailers-only or not.
async fn status_of(response: h2::client::ResponseFuture) -> (String, String) {
    let response = response.await.unwrap();
    let (parts, mut body) = response.into_parts();
    let get = |h: &http::HeaderMap, name: &str| {
        h.get(name)
            .map(|v| v.to_str().unwrap().replace("%20", " "))
            .unwrap_or_default()
    };
    if parts.headers.contains_key("grpc-status") {
        return (
            get(&parts.headers, "grpc-status"),
            get(&parts.headers, "grpc-message"),
        );
    }
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    (
        get(&trailers, "grpc-status"),
        get(&trailers, "grpc-message"),
    )
}

const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SOON;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(ms(5)).await;
    }
}

fn echo_config_with(extra: &str) -> ServiceConfig {
    echo_service(&format!("{}{extra}", common::ECHO_CONFIG))
}

// ---------------------------------------------------------------------------------------------
// Item 7: connections.

#[tokio::test]
async fn a_silent_socket_and_a_partial_preface_are_closed_at_the_request_header_deadline() {
    let backend = H2Backend::start(Behaviour::Silent).await;
    let mut s = settings(backend.addr);
    s.connections.request_header_timeout = ms(300);
    let proxy = RunningProxy::start(&echo_config(), s).await;

    testkit::assert_closes_silent_and_partial_preface(proxy.addr, SOON).await;

    // A full HTTP/2 preface and SETTINGS but never a stream: closed too.
    let mut client = H2Client::connect(proxy.addr).await;
    assert!(client.closed_within(SOON).await, "stream-less h2 left open");
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_but_a_busy_one_stays() {
    let backend = H2Backend::start(Behaviour::Silent).await;
    let mut s = settings(backend.addr);
    s.connections.idle_timeout = ms(300);
    s.healthz = Some("/healthz".into());
    let proxy = RunningProxy::start(&echo_config(), s).await;

    // Busy: one call open (forwarded, unanswered) for several idle timeouts.
    let mut busy = H2Client::connect(proxy.addr).await;
    let (_response, _stream) = busy.open("Unary").await.unwrap();
    eventually("call forwarded", || backend.streams() == 1).await;
    assert!(
        !busy.closed_within(ms(1200)).await,
        "a connection with an open stream was closed as idle"
    );

    // Idle after one complete request: GOAWAY, then closed.
    let mut idle = H2Client::connect(proxy.addr).await;
    let request = Request::get(format!("http://{}/healthz", proxy.addr))
        .body(())
        .unwrap();
    let (response, _) = idle
        .send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request, true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert!(idle.closed_within(SOON).await, "idle connection left open");
}

/// The connection is served: an HTTP/1.1 health check on it is answered.
async fn is_served(stream: TcpStream) -> bool {
    answers_get(stream, "/healthz", 200, SOON).await
}

#[tokio::test]
async fn connections_over_the_global_or_per_peer_limit_are_closed() {
    let backend = H2Backend::start(Behaviour::Silent).await;
    let mut s = settings(backend.addr);
    s.connections.max_connections = 3;
    s.connections.max_connections_per_peer = 2;
    s.healthz = Some("/healthz".into());
    let proxy = RunningProxy::start(&echo_config(), s).await;

    let a1 = connect_from("127.0.0.1", proxy.addr).await;
    let a2 = connect_from("127.0.0.1", proxy.addr).await;
    // A third from the same peer: over the per-peer limit.
    let mut a3 = connect_from("127.0.0.1", proxy.addr).await;
    assert!(
        peer_closes(&mut a3, SOON).await,
        "per-peer limit not enforced"
    );
    // Another peer is still welcome, up to the global limit.
    let b1 = connect_from("127.0.0.2", proxy.addr).await;
    let mut b2 = connect_from("127.0.0.2", proxy.addr).await;
    assert!(
        peer_closes(&mut b2, SOON).await,
        "global limit not enforced"
    );

    // Admitted connections are served; once one closes, its slot is free again.
    assert!(is_served(a1).await);
    let served = async {
        loop {
            if is_served(connect_from("127.0.0.1", proxy.addr).await).await {
                return;
            }
            tokio::time::sleep(ms(20)).await;
        }
    };
    timeout(SOON, served).await.expect("freed slot reused");
    assert!(is_served(a2).await);
    assert!(is_served(b1).await);
}

// ---------------------------------------------------------------------------------------------
// Item 8: streams.

#[tokio::test]
async fn a_stream_idle_both_ways_ends_with_a_status_and_resets_the_backend_stream() {
    for (behaviour, what) in [
        (Behaviour::Silent, "before response headers"),
        (Behaviour::HeadersThenSilent, "after response headers"),
    ] {
        let backend = H2Backend::start(behaviour).await;
        let mut s = settings(backend.addr);
        s.stream_idle_timeout = ms(300);
        let proxy = RunningProxy::start(&echo_config(), s).await;
        let mut client = H2Client::connect(proxy.addr).await;
        let (response, mut stream) = client.open("Bidi").await.unwrap();
        stream
            .send_data(Bytes::from_static(EMPTY_MESSAGE), false)
            .unwrap();
        let (status, message) = timeout(SOON, status_of(response)).await.expect(what);
        assert_eq!(status, "4", "{what}: DEADLINE_EXCEEDED");
        assert_eq!(message, "stream timeout", "{what}");
        eventually("backend stream reset", || backend.resets() == 1).await;
    }
}

#[tokio::test]
async fn frames_either_way_keep_a_stream_alive() {
    // The backend sends a message every 100 ms for 1.2 s: two idle timeouts of 600 ms.
    let backend = H2Backend::start(Behaviour::Ticks(ms(100), 12)).await;
    let mut s = settings(backend.addr);
    s.stream_idle_timeout = ms(600);
    let proxy = RunningProxy::start(&echo_config(), s).await;
    let mut client = H2Client::connect(proxy.addr).await;
    let (response, _stream) = client.open("ServerStream").await.unwrap();
    let response = response.await.unwrap();
    let mut body = response.into_body();
    let mut messages = 0;
    let read_all = async {
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
            messages += 1;
        }
        body.trailers().await.unwrap().unwrap()
    };
    let trailers = timeout(SOON, read_all)
        .await
        .expect("the stream never ended");
    assert_eq!(messages, 12, "the backend's stream was cut while active");
    assert_eq!(trailers["grpc-status"], "4", "then idle: ended");

    // The client sends a message every 100 ms; the backend is silent.
    let backend = H2Backend::start(Behaviour::HeadersThenSilent).await;
    let mut s = settings(backend.addr);
    s.stream_idle_timeout = ms(600);
    let proxy = RunningProxy::start(&echo_config(), s).await;
    let mut client = H2Client::connect(proxy.addr).await;
    let (response, mut stream) = client.open("ClientStream").await.unwrap();
    let call = tokio::spawn(status_of(response));
    for _ in 0..12 {
        stream
            .send_data(Bytes::from_static(EMPTY_MESSAGE), false)
            .unwrap();
        // Real time on purpose: frames must really cross the sockets within the proxy's idle
        // timer; a paused clock would jump past it whenever the runtime waits on the kernel.
        tokio::time::sleep(ms(100)).await;
        assert!(!call.is_finished(), "ended while the client was sending");
    }
    let (status, _) = timeout(SOON, call).await.unwrap().unwrap();
    assert_eq!(status, "4");
}

#[tokio::test]
async fn a_backend_rule_deadline_bounds_unary_calls_and_is_the_idle_timeout_of_streams() {
    let backend = H2Backend::start(Behaviour::HeadersThenSilent).await;
    let config = echo_config_with("backend:\n  rules:\n  - selector: \"*\"\n    deadline: 0.6\n");
    let proxy = RunningProxy::start(&config, settings(backend.addr)).await;
    let mut client = H2Client::connect(proxy.addr).await;

    // Unary, no grpc-timeout: the method's deadline applies.
    let (response, mut stream) = client.open("Unary").await.unwrap();
    stream
        .send_data(Bytes::from_static(EMPTY_MESSAGE), true)
        .unwrap();
    let (status, message) = timeout(SOON, status_of(response)).await.unwrap();
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("4", "Deadline Exceeded")
    );
    eventually("backend stream reset", || backend.resets() == 1).await;

    // Streaming: the deadline is an idle timeout, so an active stream outlives it.
    let (response, mut stream) = client.open("ClientStream").await.unwrap();
    let call = tokio::spawn(status_of(response));
    for _ in 0..10 {
        stream
            .send_data(Bytes::from_static(EMPTY_MESSAGE), false)
            .unwrap();
        // Real time on purpose, as above: activity over real sockets keeps the stream alive.
        tokio::time::sleep(ms(100)).await;
        assert!(
            !call.is_finished(),
            "a stream was cut by the unary deadline"
        );
    }
    let (status, message) = timeout(SOON, call).await.unwrap().unwrap();
    assert_eq!((status.as_str(), message.as_str()), ("4", "stream timeout"));
}

// ---------------------------------------------------------------------------------------------
// Item 9: rapid reset of accepted streams.

#[tokio::test]
async fn resetting_forwarded_streams_gets_the_connection_closed() {
    const LIMIT: u64 = 20;
    let backend = H2Backend::start(Behaviour::Silent).await;
    let mut s = settings(backend.addr);
    s.connections.premature_reset_total_stream_count = LIMIT;
    let proxy = RunningProxy::start(&echo_config(), s).await;
    let mut client = H2Client::connect(proxy.addr).await;

    let mut opened = 0;
    for i in 0..500 {
        let Ok((_response, mut stream)) = client.open("Unary").await else {
            break;
        };
        opened += 1;
        // Wait until the proxy forwarded it (the pending-accept limit never sees it), unless
        // the proxy has stopped taking streams.
        let forwarded = async {
            while backend.streams() < i + 1 && !client.conn.is_finished() {
                tokio::time::sleep(ms(2)).await;
            }
        };
        timeout(SOON, forwarded)
            .await
            .expect("neither forwarded nor closed");
        if client.conn.is_finished() {
            break;
        }
        stream.send_reset(Reason::CANCEL);
    }
    assert!(
        client.closed_within(SOON).await,
        "connection still open after {opened} forwarded-then-reset streams"
    );
    assert!(
        backend.streams() <= LIMIT as usize,
        "the backend saw {} streams (limit {LIMIT})",
        backend.streams()
    );
}

#[tokio::test]
async fn many_complete_calls_on_one_connection_are_not_affected() {
    let backend = start_echo().await;
    let mut s = settings(backend.addr());
    s.connections.premature_reset_total_stream_count = 20;
    let proxy = RunningProxy::start(&echo_config(), s).await;
    // One tonic channel: one HTTP/2 connection.
    let mut client = echo_client(proxy.url()).await;
    for i in 0..200 {
        let reply = client
            .unary(echo::pb::EchoRequest {
                payload: format!("{i}").into_bytes().into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("call {i}: {status}"));
        assert_eq!(reply.into_inner().payload, format!("{i}").as_bytes());
    }
}
