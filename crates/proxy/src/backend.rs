//! The connections to the one backend: `backend_connections` HTTP/2 connections, each
//! multiplexing many calls, used in turn. A connection is opened when a call first needs it and
//! again when it has closed (the backend restarted, went away, or sent GOAWAY) or has opened
//! [`STREAMS_PER_CONNECTION`] streams (HTTP/2 stream ids run out at 2³¹).
//!
//! A call holds a clone of its connection's [`SendRequest`] handle: no pool checkout, no key
//! hashing, no idle bookkeeping per call (what hyper-util's general-purpose client does).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioTimer;
use tower::ServiceExt;

use crate::ProxyError;
use crate::exec::BoxingExecutor;
use crate::settings::{BackendUrl, ProxySettings};
use crate::stream::RequestBody;

/// Client stream ids are odd and below 2³¹: a connection can open 2³⁰ streams. It is replaced a
/// little before, so no call ever meets an exhausted connection.
pub(crate) const STREAMS_PER_CONNECTION: u64 = (1 << 30) - 1024;

/// Why a call could not reach the backend. `Connect` answers "connection failure", the others
/// "remote reset" (the wire table in `wire.rs`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error("connecting to the backend")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("connecting to the backend: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP/2 handshake with the backend")]
    Handshake(#[source] hyper::Error),
    #[error("backend call")]
    Call(#[source] hyper::Error),
}

impl BackendError {
    /// No connection could be made (the metric `backend_connect_failures`).
    pub(crate) fn is_connect(&self) -> bool {
        !matches!(self, BackendError::Call(_))
    }
}

type Connector = HttpsConnector<HttpConnector>;

/// The byte stream to the backend (TCP, or TLS over TCP), behind a pointer. hyper spawns two
/// tasks per call (its response future and its request-body pipe) as variants of one enum whose
/// third variant is the connection itself: inline, the connection's stream (rustls' state
/// among it) made each of those tasks 2.5 KB; boxed, a call's tasks are the size of what they
/// hold. One indirect call per read or write of the connection is the price.
type BackendIo = Box<dyn Io>;

trait Io: hyper::rt::Read + hyper::rt::Write + Send + Unpin {}

impl<T: hyper::rt::Read + hyper::rt::Write + Send + Unpin> Io for T {}

/// A call sent once more on a new connection (boxed: rare).
type Resending = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BackendError>> + Send>>;

/// Generic over the request body only so that its tests can send bodies of their own.
pub(crate) struct BackendPool<B = RequestBody> {
    slots: Box<[Slot<B>]>,
    next: AtomicUsize,
    connector: Connector,
    h2: http2::Builder<BoxingExecutor>,
    backend: BackendUrl,
    connect_timeout: Duration,
    streams_per_connection: u64,
}

/// One connection's place in the pool.
struct Slot<B> {
    live: Mutex<Option<Live<B>>>,
    /// Held while connecting: calls arriving meanwhile wait for that connection rather than
    /// each opening their own.
    connecting: tokio::sync::Mutex<()>,
}

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Self {
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }
}

struct Live<B> {
    sender: SendRequest<B>,
    /// Streams this connection may still open.
    streams_left: u64,
}

impl<B> Slot<B> {
    /// The open connection's handle, counting the stream the caller is about to open.
    fn take_stream(&self) -> Option<SendRequest<B>> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match live.as_mut() {
            Some(l) if l.streams_left > 0 && !l.sender.is_closed() => {
                l.streams_left -= 1;
                Some(l.sender.clone())
            }
            _ => {
                // Closed or exhausted: dropping our handle lets the connection end once its
                // in-flight calls have.
                *live = None;
                None
            }
        }
    }

    fn store(&self, sender: SendRequest<B>, streams: u64) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *live = Some(Live {
            sender,
            streams_left: streams,
        });
    }
}

impl<B> BackendPool<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn new(settings: &ProxySettings) -> Result<Self, ProxyError> {
        Ok(Self {
            slots: (0..settings.backend_connections.max(1))
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            connector: connector(settings)?,
            h2: h2_builder(settings),
            backend: settings.backend.clone(),
            connect_timeout: settings.backend_connect_timeout,
            streams_per_connection: STREAMS_PER_CONNECTION,
        })
    }

    /// Sends the call on the next connection in turn, opening it if needed. A call the
    /// connection refused before sending anything (it closed meanwhile) is sent once more on a
    /// new connection, as hyper-util's client does.
    ///
    /// The call is handed to the connection here, not when the future is first polled. Every
    /// call in flight holds the returned future, so its size is memory per stream: it keeps
    /// only hyper's response future on the hot path; connecting and sending again are boxed.
    pub(crate) fn send(
        self: &Arc<Self>,
        request: Request<B>,
    ) -> impl Future<Output = Result<Response<Incoming>, BackendError>> + Send + use<B>
    where
        B: Sync,
    {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let pool = Arc::clone(self);
        match self.slots[slot].take_stream() {
            Some(mut sender) => {
                let response = sender.try_send_request(request);
                // A combinator, not an `async` block, which would hold hyper's future twice.
                Either::Left(response.then(move |result| match result {
                    Ok(response) => Either::Left(std::future::ready(Ok(response))),
                    Err(err) => match pool.again(slot, err) {
                        Ok(again) => Either::Right(again),
                        Err(err) => Either::Left(std::future::ready(Err(err))),
                    },
                }))
            }
            None => Either::Right(Box::pin(async move {
                let mut sender = pool.connect(&pool.slots[slot]).await?;
                sender
                    .send_request(request)
                    .await
                    .map_err(BackendError::Call)
            })),
        }
    }

    /// A call the slot's connection refused unsent (it had closed): once more, on a new one.
    /// Any other failure is the call's.
    fn again(
        self: Arc<Self>,
        slot: usize,
        mut err: hyper::client::conn::TrySendError<Request<B>>,
    ) -> Result<Resending, BackendError>
    where
        B: Sync,
    {
        let Some(request) = err.take_message() else {
            return Err(BackendError::Call(err.into_error()));
        };
        Ok(Box::pin(async move {
            let slot = &self.slots[slot];
            let mut sender = match slot.take_stream() {
                Some(sender) => sender,
                None => self.connect(slot).await?,
            };
            sender
                .send_request(request)
                .await
                .map_err(BackendError::Call)
        }))
    }

    /// A new connection for `slot` (or the one another call just opened), with one stream
    /// counted for the caller.
    async fn connect(&self, slot: &Slot<B>) -> Result<SendRequest<B>, BackendError> {
        let _connecting = slot.connecting.lock().await;
        if let Some(sender) = slot.take_stream() {
            return Ok(sender);
        }
        let handshake = async {
            // What the connector dials: `http`/`https` and the backend's authority.
            let target = Uri::builder()
                .scheme(self.backend.scheme())
                .authority(self.backend.authority.clone())
                .path_and_query("/")
                .build()
                .map_err(|err| BackendError::Connect(err.into()))?;
            let io = self
                .connector
                .clone()
                .oneshot(target)
                .await
                .map_err(BackendError::Connect)?;
            let io: BackendIo = Box::new(io);
            self.h2.handshake(io).await.map_err(BackendError::Handshake)
        };
        let (sender, connection) = tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| BackendError::ConnectTimeout(self.connect_timeout))??;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "backend connection ended");
            }
        });
        slot.store(
            sender.clone(),
            self.streams_per_connection.saturating_sub(1),
        );
        Ok(sender)
    }
}

fn h2_builder(settings: &ProxySettings) -> http2::Builder<BoxingExecutor> {
    let limits = &settings.http2;
    let mut builder = http2::Builder::new(BoxingExecutor);
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(limits.initial_stream_window_size)
        .initial_connection_window_size(limits.initial_connection_window_size)
        .max_header_list_size(limits.max_header_list_size)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

fn connector(settings: &ProxySettings) -> Result<Connector, ProxyError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.backend_connect_timeout));

    let roots = if settings.backend.tls {
        backend_roots(settings)?
    } else {
        // h2c: the TLS configuration is never used.
        rustls::RootCertStore::empty()
    };
    // ALPN (h2) is set by the connector builder below.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ProxyError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();

    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http))
}

fn backend_roots(settings: &ProxySettings) -> Result<rustls::RootCertStore, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.backend_ca {
        Some(path) => {
            for cert in crate::server::read_certs(path, "backend CA")? {
                roots.add(cert).map_err(ProxyError::Tls)?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                // Unparseable system certificates are skipped, as every rustls user does.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ProxyError::NoRootCertificates);
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// An HTTP/2 backend on 127.0.0.1:0 that answers every request with 200 and counts the
    /// connections it accepted.
    struct Backend {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
        accept: JoinHandle<()>,
    }

    impl Backend {
        async fn start() -> Self {
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
                        let service = hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
                        });
                        let conn = serve_h2(stream, service);
                        connections.lock().unwrap().push(tokio::spawn(conn));
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

    async fn serve_h2<S>(stream: tokio::net::TcpStream, service: S)
    where
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Empty<Bytes>>,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    fn pool(addr: std::net::SocketAddr, connections: usize) -> Arc<BackendPool<Empty<Bytes>>> {
        pool_with(addr, connections, STREAMS_PER_CONNECTION)
    }

    fn pool_with(
        addr: std::net::SocketAddr,
        connections: usize,
        streams_per_connection: u64,
    ) -> Arc<BackendPool<Empty<Bytes>>> {
        let backend = format!("grpc://{addr}").parse().unwrap();
        let mut settings = ProxySettings::new("127.0.0.1:0".parse().unwrap(), backend);
        settings.backend_connections = connections;
        let mut pool = BackendPool::new(&settings).unwrap();
        pool.streams_per_connection = streams_per_connection;
        Arc::new(pool)
    }

    fn call(addr: std::net::SocketAddr) -> Request<Empty<Bytes>> {
        Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/p.S/M"))
            .body(Empty::new())
            .unwrap()
    }

    async fn call_ok(pool: &Arc<BackendPool<Empty<Bytes>>>, addr: std::net::SocketAddr) {
        let response = pool.send(call(addr)).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
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

    /// hyper's client spawns two tasks per call (the response future, the request-body pipe)
    /// as variants of one enum with the connection's own task: every call in flight holds one
    /// of that enum's size. With the connection's byte stream inline (rustls' state among it)
    /// it was 2536 bytes (debug build); boxed, 1440.
    #[tokio::test]
    async fn the_tasks_spawned_per_call_do_not_hold_the_connection_inline() {
        let backend = Backend::start().await;
        let pool = pool(backend.addr, 1);
        call_ok(&pool, backend.addr).await;
        let size = crate::exec::spawned::largest_client_task();
        assert!(size > 0, "no client task was recorded");
        assert!(size <= 1600, "hyper's per-call client task is {size} bytes");
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
        // Wait (bounded) until the pool's connection task has seen the close.
        let closed = async {
            loop {
                let closed = pool.slots[0]
                    .live
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_none_or(|l| l.sender.is_closed());
                if closed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .unwrap();
        call_ok(&pool, backend.addr).await;
        assert_eq!(backend.accepted(), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = pool(addr, 1);
        let err = pool.send(call(addr)).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }
}
