//! Every server the tests run, in this process on `127.0.0.1:0`: one way to start each.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use proxy::{BackendUrl, Proxy, ProxySettings};
use service_config::{Descriptor, ServiceConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A listener on a free port of 127.0.0.1.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An address nothing listens on (a port reserved, then freed).
pub async fn dead_addr() -> SocketAddr {
    let reserved = listener().await;
    reserved.local_addr().unwrap()
}

/// The echo backend.
pub async fn start_echo() -> echo::RunningServer {
    echo::RunningServer::start(listener().await).unwrap()
}

/// The Bookstore on an in-memory database (two shelves to start with).
pub async fn start_bookstore() -> bookstore::RunningServer {
    start_bookstore_on(&bookstore::DbLocation::Memory).await
}

/// The Bookstore on the database at `db`.
pub async fn start_bookstore_on(db: &bookstore::DbLocation) -> bookstore::RunningServer {
    let store = bookstore::Store::open(db).unwrap();
    bookstore::RunningServer::start(listener().await, Arc::new(store)).unwrap()
}

/// Serves `router` (a tonic server with its services added, e.g. one behind an interceptor) on
/// a background task until the runtime ends; returns its address.
pub async fn serve_router(router: tonic::transport::server::Router) -> SocketAddr {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    addr
}

/// The echo API, every method open to unregistered callers.
pub const ECHO_CONFIG: &str = "\
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
usage:
  rules:
  - selector: \"*\"
    allow_unregistered_calls: true
";

/// The Bookstore API, every method open to unregistered callers.
pub const BOOKSTORE_CONFIG: &str = "\
type: google.api.Service
config_version: 3
name: bookstore.endpoints.example.cloud.goog
apis:
- name: endpoints.examples.bookstore.Bookstore
usage:
  rules:
  - selector: \"*\"
    allow_unregistered_calls: true
";

/// `yaml` resolved against the echo API's descriptors.
pub fn echo_service(yaml: &str) -> ServiceConfig {
    let descriptor = Descriptor::from_file_descriptor_set(echo::FILE_DESCRIPTOR_SET).unwrap();
    service_config::from_yaml(yaml, descriptor).unwrap()
}

/// `yaml` resolved against the Bookstore's descriptors.
pub fn bookstore_service(yaml: &str) -> ServiceConfig {
    let descriptor = Descriptor::from_file_descriptor_set(bookstore::FILE_DESCRIPTOR_SET).unwrap();
    service_config::from_yaml(yaml, descriptor).unwrap()
}

pub fn echo_config() -> ServiceConfig {
    echo_service(ECHO_CONFIG)
}

pub fn bookstore_config() -> ServiceConfig {
    bookstore_service(BOOKSTORE_CONFIG)
}

/// Proxy settings listening on 127.0.0.1:0 and forwarding to the gRPC backend at `backend`.
pub fn settings(backend: SocketAddr) -> ProxySettings {
    let backend: BackendUrl = format!("grpc://{backend}").parse().unwrap();
    ProxySettings::new("127.0.0.1:0".parse().unwrap(), backend)
}

/// A proxy serving on a background task; dropping it stops the proxy.
pub struct RunningProxy {
    pub addr: SocketAddr,
    /// The admin listener, when the settings asked for one.
    pub admin: Option<SocketAddr>,
    /// Swaps in new configurations while it serves.
    pub reloader: proxy::Reloader,
    stop: oneshot::Sender<()>,
    task: JoinHandle<bool>,
}

impl RunningProxy {
    pub async fn start(config: &ServiceConfig, settings: ProxySettings) -> Self {
        let proxy = Proxy::bind(config, settings).await.unwrap();
        let addr = proxy.local_addr();
        let admin = proxy.admin_addr();
        let reloader = proxy.reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            reloader,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin listener's address (panics when the proxy has none).
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("the proxy was started without an admin listener")
    }

    /// Begins the drain (as SIGTERM does) and returns the task that reports whether every call
    /// finished in time.
    pub fn shutdown(self) -> JoinHandle<bool> {
        let _ = self.stop.send(());
        self.task
    }
}

/// An echo backend with a proxy in front of it.
pub async fn echo_stack() -> (echo::RunningServer, RunningProxy) {
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), settings(backend.addr())).await;
    (backend, proxy)
}

/// A Bookstore with a proxy in front of it.
pub async fn bookstore_stack() -> (bookstore::RunningServer, RunningProxy) {
    let backend = start_bookstore().await;
    let proxy = RunningProxy::start(&bookstore_config(), settings(backend.addr())).await;
    (backend, proxy)
}

/// The key server (`iam::serve`, `serve_with` or `serve_pool`) on a background task; dropping
/// it stops the server.
pub struct KeyServer {
    pub addr: SocketAddr,
    /// Serving TLS ([`KeyServer::start_tls`]): [`KeyServer::url`] is `https://`.
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<iam::Result<()>>,
}

impl KeyServer {
    /// `iam::serve` on the store at `store` (a SQLite file's path or a [`iam::StoreLocation`]).
    pub async fn start(store: impl Into<iam::StoreLocation>) -> KeyServer {
        Self::start_with(store, iam::ConnectionLimits::default()).await
    }

    /// `iam::serve_with` on the store at `store`, with these connection limits.
    pub async fn start_with(
        store: impl Into<iam::StoreLocation>,
        limits: iam::ConnectionLimits,
    ) -> KeyServer {
        let store: iam::StoreLocation = store.into();
        Self::spawn(|listener, stopped| async move {
            iam::serve_with(listener, store, limits, stopped).await
        })
        .await
    }

    /// `iam::serve_observed` over TLS with the certificate chain `cert` and its key `key` (PEM
    /// files), on the store file at `store`; [`KeyServer::url`] is `https://ADDR`.
    pub async fn start_tls(
        store: impl Into<iam::StoreLocation>,
        cert: &Path,
        key: &Path,
    ) -> KeyServer {
        let acceptor = iam::tls::acceptor(cert, key).unwrap();
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        let mut server = Self::spawn(|listener, stopped| {
            iam::serve_observed(
                listener,
                pool,
                None,
                iam::ConnectionLimits::default(),
                None,
                Some(acceptor),
                iam::CheckAuth::Off,
                stopped,
            )
        })
        .await;
        server.tls = true;
        server
    }

    /// `iam::serve_observed` with `auth` for API-key checks (`iam::CheckAuth::Required`: only
    /// authenticated callers holding the Service Controller role), on the store at `store`;
    /// with `tokens` (a token service on the same store) its access tokens are accepted too.
    pub async fn start_checked(
        store: impl Into<iam::StoreLocation>,
        tokens: Option<iam::TokenService>,
        auth: iam::CheckAuth,
    ) -> KeyServer {
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        Self::spawn(|listener, stopped| {
            iam::serve_observed(
                listener,
                pool,
                tokens,
                iam::ConnectionLimits::default(),
                None,
                None,
                auth,
                stopped,
            )
        })
        .await
    }

    /// `iam::serve_pool` on an open pool of store connections.
    pub async fn start_pool(pool: Arc<iam::StorePool>) -> KeyServer {
        Self::spawn(|listener, stopped| {
            iam::serve_pool(listener, pool, iam::ConnectionLimits::default(), stopped)
        })
        .await
    }

    /// `iam::serve_tokens`: the key server with a token service whose issuer URL is the
    /// server's own `http://ADDR`. `settings` gets that URL and returns the token service's
    /// settings (KEK, rotation, clock); the token service is returned too, for direct calls.
    pub async fn start_tokens(
        store: impl Into<iam::StoreLocation>,
        settings: impl FnOnce(String) -> iam::TokenServiceSettings,
    ) -> (KeyServer, iam::TokenService) {
        let store: iam::StoreLocation = store.into();
        let listener = listener().await;
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tokens = iam::TokenService::open(&store, settings(url)).unwrap();
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        let service = tokens.clone();
        let server = Self::spawn_on(listener, |listener, stopped| {
            iam::serve_tokens(
                listener,
                pool,
                Some(service),
                iam::ConnectionLimits::default(),
                stopped,
            )
        });
        (server, tokens)
    }

    async fn spawn<S, F>(serve: S) -> KeyServer
    where
        S: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = iam::Result<()>> + Send + 'static,
    {
        Self::spawn_on(listener().await, serve)
    }

    fn spawn_on<S, F>(listener: TcpListener, serve: S) -> KeyServer
    where
        S: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = iam::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Box::pin(async {
                let _ = stopped.await;
            }),
        ));
        KeyServer {
            addr,
            tls: false,
            stop: Some(stop),
            task,
        }
    }

    /// `http://ADDR` (`https://ADDR` with TLS): the base URL of the key server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Tells the server to stop, without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and fails the test unless it ended cleanly.
    pub async fn stop(mut self) {
        self.signal_stop();
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// An HTTP/2 cleartext client connection to `addr` with hyper, whose connection task runs in
/// the background: for requests no gRPC client would send.
pub async fn h2c<B>(
    addr: impl tokio::net::ToSocketAddrs,
) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A TCP connection to `to` from the address `source` (another loopback address counts as
/// another peer).
pub async fn connect_from(source: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closes `stream` within `within` (reading and dropping what it sends).
pub async fn peer_closes(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

/// Asserts that the server at `addr` closes, within `within`, a socket that never sends a byte
/// and one that stops after 16 of the 24 bytes of the HTTP/2 preface (the protocol cannot be told
/// yet): the first-request deadline of both of esprit's servers.
pub async fn assert_closes_silent_and_partial_preface(
    addr: std::net::SocketAddr,
    within: std::time::Duration,
) {
    use tokio::io::AsyncWriteExt as _;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(
        peer_closes(&mut silent, within).await,
        "silent socket left open"
    );
    assert!(
        peer_closes(&mut partial, within).await,
        "partial preface left open"
    );
}

/// Whether an HTTP/1.1 `GET path` on `stream` is answered with `status` within `within`.
pub async fn answers_get(
    mut stream: tokio::net::TcpStream,
    path: &str,
    status: u16,
    within: std::time::Duration,
) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).starts_with(&format!("HTTP/1.1 {status}"))
}

/// An HTTP/1.1 answer: status, headers, body as text.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
    /// The body's bytes, for binary answers (gRPC-Web).
    pub raw: bytes::Bytes,
}

impl HttpReply {
    /// The body as JSON; fails the test when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One HTTP/1.1 request on a new connection to `addr` (hyper's client), bounded by 10 s.
pub async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> HttpReply {
    use http_body_util::BodyExt as _;
    let call = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        HttpReply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            raw: body,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .expect("HTTP answer within 10 s")
}

/// `POST path` with a form body (`application/x-www-form-urlencoded`).
pub async fn post_form(addr: SocketAddr, path: &str, form: &[(&str, &str)]) -> HttpReply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    http1(
        addr,
        "POST",
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.into_bytes(),
    )
    .await
}

/// Proxy settings with the admin listener on 127.0.0.1:0 (and defaults otherwise).
pub fn settings_with_admin(backend: SocketAddr) -> ProxySettings {
    let mut settings = settings(backend);
    settings.admin = Some(proxy::AdminSettings::new("127.0.0.1:0".parse().unwrap()));
    settings
}

/// `GET path` over HTTP/1.1 on a fresh connection: the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = http1(addr, "GET", path, &[], Vec::new()).await;
    (reply.status, reply.body)
}

/// Polls `GET path` until it answers `status` (panics after `within`): for states that change
/// in the background, such as readiness.
pub async fn wait_for_status(
    addr: SocketAddr,
    path: &str,
    status: u16,
    within: std::time::Duration,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (got, body) = http_get(addr, path).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} still answers {got} after {within:?}, not {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
