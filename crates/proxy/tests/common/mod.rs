//! Shared harness for the proxy's end-to-end tests: the servers on `127.0.0.1:0` (from
//! `testkit`), real clients.
#![allow(dead_code, clippy::unwrap_used)]

pub mod admin;
pub mod api_keys;

use std::net::SocketAddr;

pub use testkit::servers::*;

/// How a streaming call ended: `Ok` after reading every message, else the status it ended with
/// (when the call starts or mid-stream).
pub async fn stream_outcome<T>(
    call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
) -> tonic::Code {
    match call {
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return tonic::Code::Ok,
                    Err(status) => return status.code(),
                }
            }
        }
        Err(status) => status.code(),
    }
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
    let mut sender = h2c(addr).await;
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
