//! Serving the Bookstore, health and reflection services on one listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::pb::bookstore_server::BookstoreServer;
use crate::service::BookstoreService;
use crate::store::Store;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC")]
    Transport(#[from] tonic::transport::Error),
    #[error("reading the listener's address")]
    Io(#[from] std::io::Error),
    #[error("the server task panicked or was cancelled")]
    Task(#[from] tokio::task::JoinError),
}

/// The HTTP/2 settings of the sample servers. tonic leaves several of these unlimited when not told
/// otherwise (concurrent streams, locally reset streams), so every one is set here on purpose.
pub fn http2_server() -> Server {
    Server::builder()
        .max_concurrent_streams(Some(1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_local_error_reset_streams(Some(1024))
        // Room for large JWTs in `authorization` and `x-endpoint-api-userinfo`.
        .http2_max_header_list_size(Some(64 * 1024))
        .initial_stream_window_size(Some(1024 * 1024))
        .initial_connection_window_size(Some(4 * 1024 * 1024))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
}

/// Serves the Bookstore on `listener` until `shutdown` completes, then drains in-flight calls.
///
/// Besides `endpoints.examples.bookstore.Bookstore` it serves `grpc.health.v1.Health` (the
/// Bookstore and the empty service name report `SERVING`) and server reflection v1 and v1alpha.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<BookstoreServer<BookstoreService>>()
        .await;
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    http2_server()
        .add_service(BookstoreServer::new(BookstoreService::new(store)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// A Bookstore running on a background task, for tests and embedding.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Starts serving on `listener` (bind it to `127.0.0.1:0` in tests).
    pub fn start(listener: TcpListener, store: Arc<Store>) -> Result<Self, ServeError> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, store, async {
            // A dropped sender also stops the server.
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for `tonic::transport::Endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for in-flight calls, and returns how serving ended.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
