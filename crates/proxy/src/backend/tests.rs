//! The backend connections against real HTTP/2 servers on 127.0.0.1 (hyper's, and h2's for
//! what hyper's server cannot be made to do: stall, send GOAWAY on cue, hold its window shut).
#![allow(clippy::unwrap_used)]

use super::*;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, StreamBody};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// An HTTP/2 backend on 127.0.0.1:0 (hyper's server) that answers every request with 200
/// and counts the connections it accepted.
struct Backend {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Backend {
    async fn start() -> Self {
        Self::serving(|stream| {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
            });
            async move {
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
            }
        })
        .await
    }

    /// Serves each connection it accepts with `serve`.
    async fn serving<F, Fut>(serve: F) -> Self
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let accepted = accepted.clone();
            let connections = connections.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections
                        .lock()
                        .unwrap()
                        .push(tokio::spawn(serve(stream)));
                }
            }
        });
        Self {
            addr,
            accepted,
            connections,
            accept,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Drops every open connection, as a backend that restarts does.
    fn close_connections(&self) {
        for conn in self.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.accept.abort();
        self.close_connections();
    }
}

fn settings(addr: std::net::SocketAddr, connections: usize) -> ProxySettings {
    let backend = format!("grpc://{addr}").parse().unwrap();
    let mut settings = ProxySettings::new("127.0.0.1:0".parse().unwrap(), backend);
    settings.backend_connections = connections;
    settings
}

fn pool(addr: std::net::SocketAddr, connections: usize) -> Arc<BackendPool> {
    Arc::new(BackendPool::new(&settings(addr, connections)).unwrap())
}

fn pool_with(
    addr: std::net::SocketAddr,
    connections: usize,
    streams_per_connection: u64,
) -> Arc<BackendPool> {
    let mut pool = BackendPool::new(&settings(addr, connections)).unwrap();
    pool.streams_per_connection = streams_per_connection;
    Arc::new(pool)
}

fn call_with<B>(addr: std::net::SocketAddr, path: &str, body: B) -> Request<B> {
    Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .body(body)
        .unwrap()
}

fn call(addr: std::net::SocketAddr) -> Request<Empty<Bytes>> {
    call_with(addr, "/p.S/M", Empty::new())
}

async fn call_ok(pool: &Arc<BackendPool>, addr: std::net::SocketAddr) {
    let response = pool.send(call(addr)).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let waiting = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

fn slot_is_open(pool: &BackendPool) -> bool {
    pool.slots[0]
        .live
        .lock()
        .unwrap()
        .as_mut()
        .is_some_and(|l| !l.shared.closed.load(Ordering::Acquire) && accepts_streams(&mut l.sender))
}

#[tokio::test]
async fn calls_take_the_configured_connections_in_turn() {
    let backend = Backend::start().await;
    let pool = pool(backend.addr, 3);
    for _ in 0..9 {
        call_ok(&pool, backend.addr).await;
    }
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn calls_arriving_together_share_one_new_connection() {
    let backend = Backend::start().await;
    let pool = pool(backend.addr, 1);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let pool = pool.clone();
            let addr = backend.addr;
            tokio::spawn(async move { call_ok(&pool, addr).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn a_connection_is_replaced_once_its_streams_are_used_up() {
    let backend = Backend::start().await;
    let pool = pool_with(backend.addr, 1, 3);
    for _ in 0..7 {
        call_ok(&pool, backend.addr).await;
    }
    // 3 + 3 + 1 streams.
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn a_closed_connection_is_replaced() {
    let backend = Backend::start().await;
    let pool = pool(backend.addr, 1);
    call_ok(&pool, backend.addr).await;
    backend.close_connections();
    until("the pool has seen the close", || !slot_is_open(&pool)).await;
    call_ok(&pool, backend.addr).await;
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    // Bound, not listening (and held): connections are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let pool = pool(addr, 1);
    let err = pool.send(call(addr)).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

/// An h2 server that answers `/slow` only once `release` is notified, everything else at
/// once, and sends GOAWAY when `shut` is notified (then serves its open streams to the end).
async fn serve_until_goaway(
    stream: tokio::net::TcpStream,
    shut: Arc<Notify>,
    release: Arc<Notify>,
) {
    let mut conn = h2::server::handshake(stream).await.unwrap();
    let mut shutting = false;
    loop {
        let next = tokio::select! {
            next = conn.accept() => next,
            () = shut.notified(), if !shutting => {
                shutting = true;
                conn.graceful_shutdown();
                continue;
            }
        };
        let Some(Ok((request, mut respond))) = next else {
            return;
        };
        let release = release.clone();
        tokio::spawn(async move {
            if request.uri().path() == "/slow" {
                release.notified().await;
            }
            let _ = respond.send_response(Response::new(()), true);
        });
    }
}

/// After GOAWAY a connection takes no new stream: the next call goes on a new connection
/// and succeeds, and the call already on the old one is answered there.
#[tokio::test]
async fn a_connection_the_backend_sends_goaway_on_is_replaced_and_its_calls_finish() {
    let shut = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let backend = Backend::serving({
        let (shut, release) = (shut.clone(), release.clone());
        move |stream| serve_until_goaway(stream, shut.clone(), release.clone())
    })
    .await;
    let pool = pool(backend.addr, 1);
    let slow = tokio::spawn({
        let pool = pool.clone();
        let addr = backend.addr;
        async move {
            pool.send(call_with(addr, "/slow", Empty::<Bytes>::new()))
                .await
        }
    });
    until("the slow call is on its connection", || slot_is_open(&pool)).await;
    shut.notify_one();
    until("the pool has seen the GOAWAY", || !slot_is_open(&pool)).await;
    call_ok(&pool, backend.addr).await;
    assert_eq!(backend.accepted(), 2);
    release.notify_one();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), http::StatusCode::OK);
}

/// A body that outlives the answer's headers (bidirectional streaming) goes on being sent:
/// the backend echoes each chunk as it comes, after answering at once.
#[tokio::test]
async fn a_request_body_goes_on_after_the_answer_has_started() {
    let backend = Backend::serving(|stream| async move {
        let mut conn = h2::server::handshake(stream).await.unwrap();
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            tokio::spawn(async move {
                let mut send = respond.send_response(Response::new(()), false).unwrap();
                let mut body = request.into_body();
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    send.send_data(chunk, false).unwrap();
                }
                send.send_trailers(http::HeaderMap::new()).unwrap();
            });
        }
    })
    .await;
    let pool = pool(backend.addr, 1);
    let (chunks, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    // The answer's headers come before any of the body has been sent.
    let response = pool
        .send(call_with(backend.addr, "/p.S/Chat", body))
        .await
        .unwrap();
    let mut answer = response.into_body();
    for word in ["one", "two", "three"] {
        chunks
            .send(Ok(Frame::data(Bytes::from(word))))
            .await
            .unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(10), answer.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), word);
    }
    drop(chunks);
    let end = tokio::time::timeout(Duration::from_secs(10), answer.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(end.trailers().is_some());
}

/// A body bigger than the backend's window is read from the caller no faster than the
/// backend takes it (h2 would otherwise buffer all of it), and arrives whole.
#[tokio::test]
async fn a_request_body_is_read_no_faster_than_the_backend_takes_it() {
    const CHUNK: usize = 16 * 1024;
    const CHUNKS: usize = 512; // 8 MiB
    const WINDOW: u32 = 64 * 1024;
    let start_reading = Arc::new(Notify::new());
    let backend = Backend::serving({
        let start_reading = start_reading.clone();
        move |stream| {
            let start_reading = start_reading.clone();
            async move {
                let mut conn = h2::server::Builder::new()
                    .initial_window_size(WINDOW)
                    .initial_connection_window_size(WINDOW)
                    .handshake::<_, Bytes>(stream)
                    .await
                    .unwrap();
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let start_reading = start_reading.clone();
                    tokio::spawn(async move {
                        start_reading.notified().await;
                        let mut body = request.into_body();
                        let mut total = 0usize;
                        while let Some(Ok(chunk)) = body.data().await {
                            total += chunk.len();
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        let response = Response::builder()
                            .header("x-received", total.to_string())
                            .body(())
                            .unwrap();
                        let _ = respond.send_response(response, true);
                    });
                }
            }
        }
    })
    .await;
    let pool = pool(backend.addr, 1);
    let pulled = Arc::new(AtomicUsize::new(0));
    let frames = futures::stream::iter(0..CHUNKS).map({
        let pulled = pulled.clone();
        move |_| {
            pulled.fetch_add(CHUNK, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![7u8; CHUNK])))
        }
    });
    let call = tokio::spawn({
        let pool = pool.clone();
        let addr = backend.addr;
        async move {
            pool.send(call_with(addr, "/p.S/Upload", StreamBody::new(frames)))
                .await
        }
    });
    // The backend reads nothing yet: what was taken from the caller is bounded by its
    // window, whatever the body's size.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = pulled.load(Ordering::SeqCst);
    assert!(taken > 0, "nothing was sent");
    assert!(
        taken <= WINDOW as usize + 4 * CHUNK,
        "{taken} bytes taken from the caller with a {WINDOW}-byte window"
    );
    start_reading.notify_one();
    let response = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        response.headers()["x-received"],
        (CHUNK * CHUNKS).to_string().as_str()
    );
}

fn keep_alive_settings(addr: std::net::SocketAddr) -> ProxySettings {
    let mut settings = settings(addr, 1);
    settings.http2.keep_alive_interval = Duration::from_millis(100);
    settings.http2.keep_alive_timeout = Duration::from_millis(200);
    settings
}

/// A backend that takes the first call of its first connection and then goes silent (no
/// answer, no ping acknowledgement, connection left open); later connections are served.
async fn silent_after_first_call(stream: tokio::net::TcpStream, first: Arc<AtomicBool>) {
    let mut conn = h2::server::handshake(stream).await.unwrap();
    if !first.swap(false, Ordering::SeqCst) {
        while let Some(Ok((_request, mut respond))) = conn.accept().await {
            let _ = respond.send_response(Response::new(()), true);
        }
        return;
    }
    let taken = conn.accept().await;
    // Holds everything, polls nothing.
    std::future::pending::<()>().await;
    drop((conn, taken));
}

/// A call in flight on a connection whose backend stops answering fails once a keep-alive
/// ping goes unanswered, instead of waiting for ever; the next call opens a new connection.
#[tokio::test]
async fn a_connection_that_stops_answering_pings_is_closed_and_its_calls_fail() {
    let first = Arc::new(AtomicBool::new(true));
    let backend = Backend::serving({
        let first = first.clone();
        move |stream| silent_after_first_call(stream, first.clone())
    })
    .await;
    let pool = Arc::new(BackendPool::new(&keep_alive_settings(backend.addr)).unwrap());
    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), pool.send(call(backend.addr)))
        .await
        .expect("the call should fail once a ping goes unanswered")
        .unwrap_err();
    assert!(!err.is_connect(), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    call_ok(&pool, backend.addr).await;
    assert_eq!(backend.accepted(), 2);
}

/// An idle connection is not pinged (gRPC servers count such pings against the client): a
/// backend that answers nothing more after its one call keeps its connection.
#[tokio::test]
async fn an_idle_connection_is_not_pinged() {
    let answered = Arc::new(Notify::new());
    let backend = Backend::serving({
        let answered = answered.clone();
        move |stream| {
            let answered = answered.clone();
            async move {
                let mut conn = h2::server::handshake(stream).await.unwrap();
                let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
                respond.send_response(Response::new(()), true).unwrap();
                // Polled until the client has the answer, then never again.
                tokio::select! {
                    _ = conn.accept() => {}
                    () = answered.notified() => {}
                }
                std::future::pending::<()>().await;
                drop(conn);
            }
        }
    })
    .await;
    let pool = Arc::new(BackendPool::new(&keep_alive_settings(backend.addr)).unwrap());
    call_ok(&pool, backend.addr).await;
    answered.notify_one();
    // Several keep-alive intervals and timeouts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(slot_is_open(&pool), "the idle connection was closed");
}
