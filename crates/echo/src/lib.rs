//! A small gRPC echo service, the backend of esprit's end-to-end tests and benchmarks.
//!
//! `esprit.echo.v1.Echo` answers unary, server-streaming, client-streaming and bidirectional
//! calls. Each reply says what the server received: the ASCII request metadata in the message,
//! and every request header echoed back as an `echo-<name>` response header (binary `-bin`
//! values unchanged). Successful responses end with the trailers `echo-trailer: done` and
//! `echo-trailer-bin` ([`TRAILER_BIN_VALUE`]). A request can ask for a delay (`sleep_ms`) or a
//! status (`fail_code`, `fail_message`). Messages up to [`MAX_MESSAGE_SIZE`] are accepted.
//! [`Reflect::Nothing`] (`echo-server --plain`) turns the reflection off, for benchmarks. It
//! deliberately has no authentication, TLS, health or reflection service, and no logging on
//! the request path, to stay cheap as a benchmark backend.

pub mod headers;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

pub use headers::{EchoMetadataLayer, TRAILER_BIN_VALUE};
pub use service::{EchoService, Reflect};

/// Generated messages, client (`echo_client`) and server (`echo_server`).
pub mod pb {
    tonic::include_proto!("esprit.echo.v1");
}

/// The encoded `FileDescriptorSet` of `proto/echo.proto`, with imports and source info.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor.bin"));

/// The fully qualified service name.
pub const SERVICE_NAME: &str = "esprit.echo.v1.Echo";

/// The largest message the server decodes or encodes: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving gRPC")]
    Transport(#[from] tonic::transport::Error),
    #[error("reading the listener's address")]
    Io(#[from] std::io::Error),
    #[error("the server task panicked or was cancelled")]
    Task(#[from] tokio::task::JoinError),
}

/// The echo service with its message size limits, ready for a tonic router.
pub fn echo_server() -> pb::echo_server::EchoServer<EchoService> {
    echo_server_with(Reflect::Metadata)
}

fn echo_server_with(reflect: Reflect) -> pb::echo_server::EchoServer<EchoService> {
    pb::echo_server::EchoServer::new(EchoService::new(reflect))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Serves the echo service on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(listener, shutdown, Reflect::Metadata).await
}

/// [`serve`], choosing whether replies reflect what the server received.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    reflect: Reflect,
) -> Result<(), ServeError> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // tonic leaves concurrent streams and locally reset streams unlimited unless told; every
    // HTTP/2 limit is set on purpose. Windows are large so 32 MiB messages move quickly.
    let server = Server::builder()
        .max_concurrent_streams(Some(4096))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .http2_max_pending_accept_reset_streams(Some(256))
        .http2_max_local_error_reset_streams(Some(4096))
        .http2_max_header_list_size(Some(256 * 1024))
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .tcp_nodelay(true);
    match reflect {
        Reflect::Metadata => {
            let mut server = server.layer(EchoMetadataLayer);
            server
                .add_service(echo_server_with(reflect))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?
        }
        Reflect::Nothing => {
            let mut server = server;
            server
                .add_service(echo_server_with(reflect))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?
        }
    }
    Ok(())
}

/// An echo server running on a background task, for tests and benchmarks.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Starts serving on `listener` (bind it to `127.0.0.1:0` in tests).
    pub fn start(listener: TcpListener) -> Result<Self, ServeError> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, async {
            // A dropped sender also stops the server.
            let _ = stopped.await;
        }));
        Ok(Self { addr, stop, task })
    }

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
