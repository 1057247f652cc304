//! Every server the tests run, in this process on `127.0.0.1:0`: one way to start each.
//!
//! This file: the backends (echo, Bookstore, any tonic router), their service configs, and the
//! proxy. `key_server`: the key server. `clients`: raw HTTP clients and sockets for what a
//! gRPC client cannot send.

mod clients;
mod key_server;

pub use clients::{
    HttpReply, answers_get, assert_closes_silent_and_partial_preface, connect_from, h2c, http_get,
    http1, peer_closes, post_form, wait_for_status,
};
pub use key_server::KeyServer;

use std::net::SocketAddr;
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

/// An address of 127.0.0.1 that refuses connections: a port bound but not listening, held while
/// this value lives. A port bound and then freed is not enough: under a parallel test run another
/// test process can be handed the same port meanwhile, and its server then answers (or silently
/// accepts) the calls that were meant to fail.
pub struct DeadAddr {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl DeadAddr {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on this same address (the server that comes up where none was).
    pub fn listen(self) -> TcpListener {
        self.socket.listen(1024).unwrap()
    }
}

impl std::fmt::Display for DeadAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// A [`DeadAddr`] on a port of its own.
pub fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    DeadAddr { socket, addr }
}

/// A port of 127.0.0.1 free right now, for a program that binds it itself (reserved, then
/// freed: another process may take it first, so a caller retries when its program cannot bind).
pub async fn free_port() -> u16 {
    listener().await.local_addr().unwrap().port()
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

/// Proxy settings with the admin listener on 127.0.0.1:0 (and defaults otherwise).
pub fn settings_with_admin(backend: SocketAddr) -> ProxySettings {
    let mut settings = settings(backend);
    settings.admin = Some(proxy::AdminSettings::new("127.0.0.1:0".parse().unwrap()));
    settings
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
