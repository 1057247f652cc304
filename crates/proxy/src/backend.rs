//! The connections to the one backend: `backend_connections` HTTP/2 connections, each
//! multiplexing many calls, used in turn. A connection is opened when a call first needs it and
//! again when it has closed (the backend restarted, went away, or sent GOAWAY) or has opened
//! [`STREAMS_PER_CONNECTION`] streams (HTTP/2 stream ids run out at 2³¹).
//!
//! Calls go through h2's client directly. hyper's client, used before, passes each request
//! through a channel to its connection task and spawns two tasks per call (its response future
//! and its request-body pipe). Here a call's headers are handed to the connection when it is
//! sent; its request body is written from the caller's own task while it waits for the answer,
//! and only a body that outlives the response headers (client and bidirectional streaming) is
//! given a task of its own. A call holds a clone of its connection's [`SendRequest`] handle: no
//! pool checkout, no key hashing, no idle bookkeeping per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{PingPong, Reason, RecvStream, SendStream};
use http::{Request, Response, Uri};
use http_body::{Body, Frame};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use crate::ProxyError;
use crate::settings::{BackendUrl, ProxySettings};

/// Client stream ids are odd and below 2³¹: a connection can open 2³⁰ streams. It is replaced a
/// little before, so no call ever meets an exhausted connection.
pub(crate) const STREAMS_PER_CONNECTION: u64 = (1 << 30) - 1024;

/// What hyper's client sent before we used h2 directly, kept: how many streams a connection
/// may open before the backend's SETTINGS say how many it allows, and how much of a request
/// body h2 may buffer per stream beyond what the backend's window lets through.
const INITIAL_MAX_SEND_STREAMS: usize = 100;
const MAX_SEND_BUFFER_SIZE: usize = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;

/// Why a call could not reach the backend. The connection variants answer "connection
/// failure", the others "remote reset" (the wire table in `wire.rs`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error("connecting to the backend")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("connecting to the backend: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP/2 handshake with the backend")]
    Handshake(#[source] h2::Error),
    #[error("backend call")]
    Call(#[source] h2::Error),
    #[error("the backend closed the call's stream")]
    StreamClosed,
    #[error("reading the caller's request body")]
    RequestBody(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// No connection could be made (the metric `backend_connect_failures`).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(
            self,
            BackendError::Connect(_) | BackendError::ConnectTimeout(_) | BackendError::Handshake(_)
        )
    }
}

type Connector = HttpsConnector<HttpConnector>;

/// Pings on a connection with calls in flight, as hyper's `keep_alive_interval` /
/// `keep_alive_timeout` did: a ping not answered in `timeout` closes the connection, and its
/// calls fail rather than wait on a backend that is gone without a word.
#[derive(Debug, Clone, Copy)]
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
}

pub(crate) struct BackendPool {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    connector: Connector,
    h2: h2::client::Builder,
    keep_alive: KeepAlive,
    backend: BackendUrl,
    connect_timeout: Duration,
    streams_per_connection: u64,
}

/// One connection's place in the pool.
#[derive(Default)]
struct Slot {
    live: Mutex<Option<Live>>,
    /// Held while connecting: calls arriving meanwhile wait for that connection rather than
    /// each opening their own.
    connecting: tokio::sync::Mutex<()>,
}

struct Live {
    sender: SendRequest<Bytes>,
    shared: Arc<Shared>,
    /// Streams this connection may still open.
    streams_left: u64,
}

/// What a connection's task and its calls share.
#[derive(Debug, Default)]
struct Shared {
    /// Set when the connection's task has ended.
    closed: AtomicBool,
    /// Calls in flight. The keep-alive pings only while there are some, as hyper's did: gRPC
    /// servers count pings on an idle connection against the client.
    calls: AtomicUsize,
}

/// A call's place on its connection, held until its answer has been read or dropped.
#[derive(Debug)]
pub(crate) struct OnConnection(Arc<Shared>);

impl OnConnection {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.calls.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for OnConnection {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slot {
    /// The open connection's handle, counting the stream the caller is about to open; `None`
    /// when there is none or it can take no new stream (closed, GOAWAY received, exhausted).
    fn take_stream(&self) -> Option<(SendRequest<Bytes>, OnConnection)> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(l) = live.as_mut()
            && l.streams_left > 0
            && !l.shared.closed.load(Ordering::Acquire)
            && accepts_streams(&mut l.sender)
        {
            l.streams_left -= 1;
            return Some((l.sender.clone(), OnConnection::new(&l.shared)));
        }
        // Dropping our handle lets the connection end once its in-flight calls have.
        *live = None;
        None
    }

    fn store(&self, sender: SendRequest<Bytes>, shared: Arc<Shared>, streams: u64) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *live = Some(Live {
            sender,
            shared,
            streams_left: streams,
        });
    }
}

/// Whether the connection takes new streams: not after a GOAWAY or a connection error. h2
/// answers at once (a handle that has sent nothing registers no waker), so the call is sent
/// on a new connection rather than refused on this one.
fn accepts_streams(sender: &mut SendRequest<Bytes>) -> bool {
    matches!(
        sender.poll_ready(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(()))
    )
}

impl BackendPool {
    pub(crate) fn new(settings: &ProxySettings) -> Result<Self, ProxyError> {
        Ok(Self {
            slots: (0..settings.backend_connections.max(1))
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            connector: connector(settings)?,
            h2: h2_builder(settings),
            keep_alive: KeepAlive {
                interval: settings.http2.keep_alive_interval,
                timeout: settings.http2.keep_alive_timeout,
            },
            backend: settings.backend.clone(),
            connect_timeout: settings.backend_connect_timeout,
            streams_per_connection: STREAMS_PER_CONNECTION,
        })
    }

    /// Sends the call on the next connection in turn, opening it if needed. The request's
    /// headers are handed to the connection here when it is open; the returned future writes
    /// the request body and waits for the response headers, in the caller's task.
    pub(crate) fn send<B>(self: &Arc<Self>, request: Request<B>) -> Sending<B>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        match self.slots[slot].take_stream() {
            Some((sender, on)) => Sending::start(sender, on, request),
            None => {
                let pool = Arc::clone(self);
                Sending::Connecting(Box::pin(async move {
                    let (sender, on) = pool.connect(slot).await?;
                    Ok(Sending::start(sender, on, request))
                }))
            }
        }
    }

    /// A new connection for `slot` (or the one another call just opened), with one stream
    /// counted for the caller.
    async fn connect(
        &self,
        slot: usize,
    ) -> Result<(SendRequest<Bytes>, OnConnection), BackendError> {
        let slot = &self.slots[slot];
        let _connecting = slot.connecting.lock().await;
        if let Some(open) = slot.take_stream() {
            return Ok(open);
        }
        let shared = Arc::new(Shared::default());
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
            match io {
                MaybeHttpsStream::Http(tcp) => self.handshake(tcp.into_inner(), &shared).await,
                tls @ MaybeHttpsStream::Https(_) => {
                    self.handshake(TokioIo::new(tls), &shared).await
                }
            }
        };
        let sender = tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| BackendError::ConnectTimeout(self.connect_timeout))??;
        let on = OnConnection::new(&shared);
        slot.store(
            sender.clone(),
            shared,
            self.streams_per_connection.saturating_sub(1),
        );
        Ok((sender, on))
    }

    /// The HTTP/2 handshake, then the connection's own task: it reads and writes for every call
    /// on the connection, and pings while calls are in flight.
    async fn handshake<T>(
        &self,
        io: T,
        shared: &Arc<Shared>,
    ) -> Result<SendRequest<Bytes>, BackendError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, mut connection) = self
            .h2
            .handshake::<T, Bytes>(io)
            .await
            .map_err(BackendError::Handshake)?;
        let pings = connection.ping_pong();
        let keep_alive = self.keep_alive;
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            tokio::select! {
                ended = &mut connection => {
                    if let Err(err) = ended {
                        tracing::debug!(error = %err, "backend connection ended");
                    }
                }
                () = keep_alive.watch(pings, &shared) => {
                    tracing::warn!(
                        timeout = ?keep_alive.timeout,
                        "backend connection closed: a keep-alive ping got no answer"
                    );
                }
            }
            shared.closed.store(true, Ordering::Release);
            // Dropping the connection fails the calls still on it.
        });
        Ok(sender)
    }
}

impl KeepAlive {
    /// Returns when a ping went unanswered; pends forever otherwise.
    async fn watch(self, pings: Option<PingPong>, shared: &Shared) {
        let Some(mut pings) = pings else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(self.interval).await;
            if shared.calls.load(Ordering::Relaxed) == 0 {
                continue;
            }
            match tokio::time::timeout(self.timeout, pings.ping(h2::Ping::opaque())).await {
                Ok(Ok(_pong)) => {}
                // The connection failed: its own future ends the task and says why.
                Ok(Err(_)) => return std::future::pending().await,
                Err(_elapsed) => return,
            }
        }
    }
}

/// A call on its way to the backend: its request body is written, from the caller's task,
/// while it waits for the response headers.
pub(crate) enum Sending<B> {
    /// No connection was open (boxed: rare).
    Connecting(Pin<Box<dyn Future<Output = Result<Sending<B>, BackendError>> + Send>>),
    Open {
        response: ResponseFuture,
        /// The rest of the request body, until it has all been handed to h2.
        upload: Option<Upload<B>>,
        /// Taken by the response body.
        on: Option<OnConnection>,
    },
    Failed(Option<BackendError>),
}

impl<B> Sending<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start(mut sender: SendRequest<Bytes>, on: OnConnection, request: Request<B>) -> Self {
        let (parts, body) = request.into_parts();
        let end = body.is_end_stream();
        match sender.send_request(Request::from_parts(parts, ()), end) {
            Ok((response, stream)) => Sending::Open {
                response,
                upload: (!end).then(|| Upload {
                    stream,
                    body,
                    sent: false,
                }),
                on: Some(on),
            },
            Err(err) => Sending::Failed(Some(BackendError::Call(err))),
        }
    }
}

impl<B> Future for Sending<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<BackendBody>, BackendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                Sending::Connecting(connecting) => match ready!(connecting.as_mut().poll(cx)) {
                    Ok(open) => *this = open,
                    Err(err) => {
                        *this = Sending::Failed(None);
                        return Poll::Ready(Err(err));
                    }
                },
                Sending::Failed(err) => {
                    return Poll::Ready(Err(err.take().unwrap_or(BackendError::StreamClosed)));
                }
                Sending::Open {
                    response,
                    upload,
                    on,
                } => {
                    let mut failed = None;
                    if let Some(sending) = upload {
                        match sending.poll_send(cx) {
                            Poll::Ready(Ok(())) => *upload = None,
                            Poll::Ready(Err(BackendError::RequestBody(_))) => {
                                // The caller's stream failed (most often: the client reset it)
                                // and the backend's stream has been reset. Not answered in this
                                // poll: hyper's server looks for the client's reset right after
                                // a pending poll and then drops the call unanswered, which is
                                // what counts it as reset before its response (the rapid-reset
                                // guard). Polled again, the call answers with the reset.
                                *upload = None;
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                            Poll::Ready(Err(err)) => {
                                *upload = None;
                                failed = Some(err);
                            }
                            Poll::Pending => {}
                        }
                    }
                    // A backend may answer (and end the stream) before it has read the whole
                    // request: its answer wins over a failure to send the rest.
                    let head = match Pin::new(response).poll(cx) {
                        Poll::Ready(Ok(head)) => head,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(BackendError::Call(err))),
                        Poll::Pending => {
                            return match failed {
                                Some(err) => Poll::Ready(Err(err)),
                                None => Poll::Pending,
                            };
                        }
                    };
                    if let Some(rest) = upload.take() {
                        // Client and bidirectional streaming: the body goes on after the answer
                        // has started, in a task of its own.
                        tokio::spawn(rest.finish());
                    }
                    let on = on.take();
                    return Poll::Ready(Ok(head.map(|recv| BackendBody {
                        recv,
                        data_done: false,
                        done: false,
                        _on: on,
                    })));
                }
            }
        }
    }
}

/// A request body being handed to h2.
pub(crate) struct Upload<B> {
    stream: SendStream<Bytes>,
    body: B,
    /// Whether a frame has been sent. The first one goes without waiting for send capacity
    /// (the stream has none until the connection's task has opened it, and a unary call's one
    /// message then goes out with its headers); each later one waits until h2 has room for it,
    /// so a body is read from the caller no faster than the backend takes it.
    sent: bool,
}

impl<B> Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Ready when the whole body, with its end or trailers, has been handed to h2.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        loop {
            if self.sent {
                self.stream.reserve_capacity(1);
                if self.stream.capacity() == 0 {
                    loop {
                        match ready!(self.stream.poll_capacity(cx)) {
                            Some(Ok(0)) => {}
                            Some(Ok(_)) => break,
                            Some(Err(err)) => return Poll::Ready(Err(BackendError::Call(err))),
                            None => return Poll::Ready(Err(BackendError::StreamClosed)),
                        }
                    }
                } else if let Poll::Ready(reset) = self.stream.poll_reset(cx) {
                    return Poll::Ready(Err(match reset {
                        Ok(reason) => BackendError::Call(reason.into()),
                        Err(err) => BackendError::Call(err),
                    }));
                }
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => {
                    // The caller's stream failed, or the call ended: the backend's stream is
                    // reset rather than left waiting for the rest.
                    self.stream.send_reset(Reason::CANCEL);
                    return Poll::Ready(Err(BackendError::RequestBody(err.into())));
                }
                None => {
                    return Poll::Ready(
                        self.stream
                            .send_data(Bytes::new(), true)
                            .map_err(BackendError::Call),
                    );
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = self.body.is_end_stream();
                    self.stream
                        .send_data(data, end)
                        .map_err(BackendError::Call)?;
                    self.sent = true;
                    if end {
                        return Poll::Ready(Ok(()));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Poll::Ready(
                            self.stream
                                .send_trailers(trailers)
                                .map_err(BackendError::Call),
                        );
                    }
                }
            }
        }
    }

    /// The rest of the body, after the answer has started.
    async fn finish(mut self) {
        if let Err(err) = std::future::poll_fn(|cx| self.poll_send(cx)).await {
            tracing::debug!(error = %err, "request body to the backend ended early");
        }
    }
}

/// The backend's response body, read from h2, its flow-control window released as it is read.
#[derive(Debug)]
pub(crate) struct BackendBody {
    recv: RecvStream,
    data_done: bool,
    done: bool,
    _on: Option<OnConnection>,
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails for a stream already gone, whose next poll reports it.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => {
                    this.done = true;
                    // A stream the backend ends with NO_ERROR or CANCEL after its answer ends
                    // the body without failing it, as hyper's client reads it.
                    return match err.reason() {
                        Some(Reason::NO_ERROR | Reason::CANCEL) => Poll::Ready(None),
                        _ => Poll::Ready(Some(Err(err))),
                    };
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
    }
}

/// hyper's HTTP/2 client settings (which the proxy used before), with our windows and header
/// list size.
fn h2_builder(settings: &ProxySettings) -> h2::client::Builder {
    let limits = &settings.http2;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .initial_window_size(limits.initial_stream_window_size)
        .initial_connection_window_size(limits.initial_connection_window_size)
        .max_header_list_size(limits.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
        .max_frame_size(MAX_FRAME_SIZE)
        .enable_push(false);
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
mod tests;
