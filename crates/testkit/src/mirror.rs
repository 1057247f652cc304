//! A gRPC backend for any API whose methods answer their request type: each call is answered
//! with the message it carried (a server-streaming call, whose method name ends in `Stream`,
//! with that message [`Mirror::REPEAT`] times), and every call is recorded. What the proxy
//! made of an HTTP/JSON request is then both the recorded message and the answer.
//!
//! Request metadata steers the answer: `mirror-status: N` ends the call with status `N` and
//! `grpc-message` from `mirror-message` (trailers-only; for a stream, after
//! `mirror-messages-first` messages, default 0), so error mapping can be tested.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One call the mirror received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The messages of the request, unframed.
    pub messages: Vec<Bytes>,
}

/// A running mirror backend; its task ends with the runtime.
pub struct Mirror {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

type Answer =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

impl Mirror {
    /// Messages a server-streaming call is answered with.
    pub const REPEAT: usize = 3;

    pub async fn start() -> Self {
        let listener = crate::servers::listener().await;
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(request, &log).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// Every call so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The last call (panics when there was none).
    pub fn last(&self) -> Received {
        self.received().pop().expect("the mirror received no call")
    }
}

async fn answer(request: Request<Incoming>, log: &Mutex<Vec<Received>>) -> Response<Answer> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let messages = unframe(bytes);
    let path = parts.uri.path().to_owned();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status: Option<u32> = header("mirror-status").and_then(|s| s.parse().ok());
    let message = header("mirror-message").unwrap_or_default();
    let first: usize = header("mirror-messages-first")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    log.lock().unwrap().push(Received {
        path: path.clone(),
        headers: parts.headers.clone(),
        messages: messages.clone(),
    });
    let streaming = path.ends_with("Stream");
    let mut frames = Vec::new();
    let reply = messages.first().cloned().unwrap_or_default();
    let count = match (status, streaming) {
        (Some(_), true) => first,
        (Some(_), false) => 0,
        (None, true) => Mirror::REPEAT,
        (None, false) => 1,
    };
    for _ in 0..count {
        frames.push(Ok(Frame::data(frame(&reply))));
    }
    let mut end = HeaderMap::new();
    end.insert("grpc-status", HeaderValue::from(status.unwrap_or(0)));
    if status.is_some() {
        end.insert(
            "grpc-message",
            HeaderValue::from_str(&message).unwrap_or(HeaderValue::from_static("")),
        );
    }
    let mut response = Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures::stream::iter(Vec::new())))
        .unwrap();
    if count == 0 && status.is_some() {
        // Trailers-only: the status in the headers, no body.
        response.headers_mut().extend(end);
    } else {
        frames.push(Ok(Frame::trailers(end)));
        *response.body_mut() = StreamBody::new(futures::stream::iter(frames));
    }
    response
}

fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

fn unframe(mut bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        bytes.advance(5);
        let take = len.min(bytes.len());
        out.push(bytes.split_to(take));
    }
    out
}
