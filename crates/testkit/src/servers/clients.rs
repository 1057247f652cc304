//! Clients for what a gRPC client cannot express: raw HTTP/2 and HTTP/1.1 requests, sockets
//! from another loopback address, silent or half-open connections, and polling an HTTP status.

use std::net::SocketAddr;

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
