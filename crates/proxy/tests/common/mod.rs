//! Shared harness for the proxy's end-to-end tests: real servers on `127.0.0.1:0`, real clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use proxy::{BackendUrl, Proxy, ProxySettings};
use service_config::{Descriptor, ServiceConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

pub fn echo_config() -> ServiceConfig {
    let descriptor = Descriptor::from_file_descriptor_set(echo::FILE_DESCRIPTOR_SET).unwrap();
    service_config::from_yaml(ECHO_CONFIG, descriptor).unwrap()
}

pub fn bookstore_config() -> ServiceConfig {
    let descriptor = Descriptor::from_file_descriptor_set(bookstore::FILE_DESCRIPTOR_SET).unwrap();
    service_config::from_yaml(BOOKSTORE_CONFIG, descriptor).unwrap()
}

pub fn settings(backend: SocketAddr) -> ProxySettings {
    let backend: BackendUrl = format!("grpc://{backend}").parse().unwrap();
    ProxySettings::new("127.0.0.1:0".parse().unwrap(), backend)
}

/// A proxy serving on a background task.
pub struct RunningProxy {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<bool>,
}

impl RunningProxy {
    pub async fn start(config: &ServiceConfig, settings: ProxySettings) -> Self {
        let proxy = Proxy::bind(config, settings).await.unwrap();
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Begins the drain (as SIGTERM does) and returns the task that reports whether every call
    /// finished in time.
    pub fn shutdown(self) -> JoinHandle<bool> {
        let _ = self.stop.send(());
        self.task
    }
}

pub async fn start_echo() -> echo::RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    echo::RunningServer::start(listener).unwrap()
}

/// An echo backend with a proxy in front of it.
pub async fn echo_stack() -> (echo::RunningServer, RunningProxy) {
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_config(), settings(backend.addr())).await;
    (backend, proxy)
}

pub async fn echo_client(
    url: String,
) -> echo::pb::echo_client::EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    echo::pb::echo_client::EchoClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// Sends one HTTP/1.1 request over a fresh connection and returns (status, headers, body).
pub async fn http1(addr: SocketAddr, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// What a raw HTTP/2 call returned: HTTP status, response headers, trailers.
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub trailers: Option<http::HeaderMap>,
}

impl RawResponse {
    /// `grpc-status` from the trailers, or from the headers of a trailers-only response.
    pub fn grpc_status(&self) -> Option<i32> {
        let from = |h: &http::HeaderMap| {
            h.get("grpc-status")
                .map(|v| v.to_str().unwrap().parse().unwrap())
        };
        self.trailers
            .as_ref()
            .and_then(from)
            .or_else(|| from(&self.headers))
    }
}

/// One gRPC-shaped HTTP/2 call with hyper, which (unlike tonic) enforces no deadline of its own:
/// what comes back is what the proxy sent.
pub async fn raw_grpc_call(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    // An empty protobuf message: flag 0, length 0.
    let body = http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    RawResponse {
        status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
    }
}
