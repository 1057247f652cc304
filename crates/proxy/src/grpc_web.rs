//! gRPC-Web, a protocol of the protocol step: a browser's call (`application/grpc-web[+proto]`,
//! or base64 `application/grpc-web-text[+proto]`, over HTTP/1.1 or HTTP/2) becomes a gRPC call
//! towards the backend, and the backend's answer a gRPC-Web answer, as Envoy's `grpc_web` filter
//! does it (the gRPC-Web protocol: github.com/grpc/grpc, doc/PROTOCOL-WEB.md).
//!
//! - Request: content type `application/grpc`, `te: trailers`, no `content-length`,
//!   `grpc-accept-encoding: identity` unless the client sent one; text bodies are base64-decoded
//!   as they stream, keeping at most three bytes between chunks ([`TextDecoder`]).
//! - Response: content type `application/grpc-web+proto` (or `-text+proto` when the client's
//!   `Accept` asks for text, as Envoy decides), messages passed through (text: base64, each
//!   message padded on its own, [`TextEncoder`]), the trailers sent as the body's last frame
//!   (flag `0x80`, `name: value\r\n` lines). A trailers-only answer (the backend's, or a
//!   rejection of the proxy) keeps its status in the headers, with HTTP 200.
//!
//! Nothing here parses a message: frames are counted only to know where one ends. Message
//! sizes are bounded as for gRPC calls, by the backend; the proxy buffers no message.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::ProxyBody;
use crate::wire::Rejection;

/// How a body is encoded on the gRPC-Web side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/grpc-web` / `+proto`: gRPC's frames as they are.
    Binary,
    /// `application/grpc-web-text` / `+proto`: the same frames in base64.
    Text,
}

/// One gRPC-Web call: how its request came and how its answer must go.
#[derive(Debug, Clone)]
pub(crate) struct GrpcWeb {
    pub request: Encoding,
    pub response: Encoding,
    /// Set by the request's [`TextDecoder`] when the client's base64 is broken: the answer then
    /// says so rather than reporting the backend stream the proxy reset.
    malformed: Option<Arc<AtomicBool>>,
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// The flag of the frame that carries the trailers.
pub(crate) const TRAILER_FLAG: u8 = 0x80;

/// The gRPC-Web call `headers` describe, if any: the four content types Envoy accepts, exactly.
pub(crate) fn detect(headers: &HeaderMap) -> Option<GrpcWeb> {
    let request = encoding(headers.get(CONTENT_TYPE)?.as_bytes())?;
    // Envoy: the answer is text only when `Accept` asks for it.
    let response = headers
        .get(ACCEPT)
        .and_then(|accept| encoding(accept.as_bytes()))
        .filter(|e| *e == Encoding::Text)
        .unwrap_or(Encoding::Binary);
    Some(GrpcWeb {
        request,
        response,
        malformed: None,
    })
}

fn encoding(content_type: &[u8]) -> Option<Encoding> {
    match content_type {
        b"application/grpc-web" | b"application/grpc-web+proto" => Some(Encoding::Binary),
        b"application/grpc-web-text" | b"application/grpc-web-text+proto" => Some(Encoding::Text),
        _ => None,
    }
}

impl GrpcWeb {
    /// Rewrites the request's headers into a gRPC call's (Envoy's `decodeHeaders`), and returns
    /// the decoder its body needs, if any.
    pub(crate) fn rewrite_request(
        &mut self,
        parts: &mut http::request::Parts,
    ) -> Option<TextDecoder> {
        let headers = &mut parts.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        // An HTTP/1.1 length says nothing of the HTTP/2 body the backend gets (text is decoded).
        headers.remove(CONTENT_LENGTH);
        headers.insert(TE, HeaderValue::from_static("trailers"));
        if !headers.contains_key(GRPC_ACCEPT_ENCODING) {
            headers.insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        parts.version = http::Version::HTTP_2;
        match self.request {
            Encoding::Binary => None,
            Encoding::Text => {
                let flag = Arc::new(AtomicBool::new(false));
                self.malformed = Some(flag.clone());
                Some(TextDecoder::new(flag))
            }
        }
    }

    fn request_was_malformed(&self) -> bool {
        self.malformed
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    /// The gRPC answer (the backend's, or the proxy's own trailers-only one) as a gRPC-Web answer.
    pub(crate) fn respond(self, response: http::Response<ProxyBody>) -> http::Response<WebBody> {
        let (mut parts, inner) = response.into_parts();
        let malformed = self.request_was_malformed();
        let mut discard = false;
        if parts.status != StatusCode::OK {
            // A gRPC-Web client reads its status from `grpc-status`; HTTP errors become one
            // (Envoy's transformation of non-gRPC answers, and its local replies' 200).
            if !parts.headers.contains_key(GRPC_STATUS) {
                let code = code_for_http_status(parts.status);
                parts
                    .headers
                    .insert(GRPC_STATUS, HeaderValue::from(code as i32));
                let message = format!("HTTP status {}", parts.status.as_u16());
                if let Ok(value) = HeaderValue::from_str(&message) {
                    parts.headers.insert(GRPC_MESSAGE, value);
                }
                discard = true;
            }
            parts.status = StatusCode::OK;
        }
        if malformed {
            set_malformed_status(&mut parts.headers);
        }
        parts.headers.remove(CONTENT_LENGTH);
        parts.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(match self.response {
                Encoding::Binary => "application/grpc-web+proto",
                Encoding::Text => "application/grpc-web-text+proto",
            }),
        );
        let text = (self.response == Encoding::Text).then(TextEncoder::default);
        http::Response::from_parts(
            parts,
            WebBody {
                inner,
                text,
                web: self,
                discard,
                done: false,
            },
        )
    }
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn code_for_http_status(status: StatusCode) -> tonic::Code {
    use tonic::Code;
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

fn set_malformed_status(headers: &mut HeaderMap) {
    let rejection = Rejection::GrpcWebBadText;
    headers.insert(GRPC_STATUS, HeaderValue::from(rejection.code() as i32));
    if let Ok(message) = HeaderValue::from_str(&rejection.to_string()) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

/// The trailers as gRPC-Web's last frame: flag `0x80`, a big-endian length, then one
/// `name: value\r\n` line per value (names are lower case already).
pub(crate) fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.extend_from_slice(&[TRAILER_FLAG]);
    // Trailers are bounded by the backend connection's header list limit (128 KiB).
    frame.extend_from_slice(&u32::try_from(block.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&block);
    frame.freeze()
}

/// The client's base64 was not base64 (Envoy: "Bad gRPC-web request, invalid base64 data.").
#[derive(Debug, thiserror::Error)]
#[error("Bad gRPC-web request, invalid base64 data.")]
pub(crate) struct BadText;

/// Decodes a `grpc-web-text` request body as it streams: whole 4-character groups are decoded
/// at once, the rest (at most 3 bytes) waits for the next chunk. A padded group may end a
/// chunk of the stream (clients may encode each message on its own).
#[derive(Debug)]
pub(crate) struct TextDecoder {
    carry: [u8; 3],
    carry_len: usize,
    malformed: Arc<AtomicBool>,
}

impl TextDecoder {
    fn new(malformed: Arc<AtomicBool>) -> Self {
        Self {
            carry: [0; 3],
            carry_len: 0,
            malformed,
        }
    }

    /// The bytes of `chunk` (after what was carried) that can be decoded now.
    pub(crate) fn decode(&mut self, chunk: &[u8]) -> Result<Bytes, BadText> {
        let mut input = Vec::with_capacity(self.carry_len + chunk.len());
        input.extend_from_slice(&self.carry[..self.carry_len]);
        input.extend_from_slice(chunk);
        let whole = input.len() / 4 * 4;
        let (groups, rest) = input.split_at(whole);
        let decoded = decode_groups(groups).inspect_err(|_| self.fail())?;
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
        Ok(decoded)
    }

    /// Nothing waits for the next chunk.
    pub(crate) fn is_empty(&self) -> bool {
        self.carry_len == 0
    }

    /// The body ended: anything left over is a broken group.
    pub(crate) fn finish(&self) -> Result<(), BadText> {
        if self.carry_len == 0 {
            Ok(())
        } else {
            self.fail();
            Err(BadText)
        }
    }

    fn fail(&self) {
        self.malformed.store(true, Ordering::Release);
    }
}

/// Decodes whole groups; a group with padding ends a run, and a new run may follow it.
fn decode_groups(groups: &[u8]) -> Result<Bytes, BadText> {
    let mut out = Vec::with_capacity(groups.len() / 4 * 3);
    let mut start = 0;
    for (i, group) in groups.chunks(4).enumerate() {
        let end = (i + 1) * 4;
        if group.contains(&b'=') || end == groups.len() {
            STANDARD
                .decode_vec(&groups[start..end], &mut out)
                .map_err(|_| BadText)?;
            start = end;
        }
    }
    Ok(Bytes::from(out))
}

/// Where the response stream is within its gRPC frames.
#[derive(Debug, Clone, Copy)]
enum FrameCursor {
    /// `seen` bytes of the 5-byte frame header read; `len` the length bytes so far.
    Header { seen: usize, len: [u8; 4] },
    /// `left` bytes of the message to come.
    Payload { left: usize },
}

impl Default for FrameCursor {
    fn default() -> Self {
        FrameCursor::Header {
            seen: 0,
            len: [0; 4],
        }
    }
}

impl FrameCursor {
    /// Consumes up to the end of the current frame: how many bytes of `input`, and whether a
    /// frame ended there.
    fn advance(&mut self, input: &[u8]) -> (usize, bool) {
        match self {
            FrameCursor::Header { seen, len } => {
                let take = (5 - *seen).min(input.len());
                for (i, &byte) in input[..take].iter().enumerate() {
                    let at = *seen + i;
                    if at >= 1 {
                        len[at - 1] = byte;
                    }
                }
                *seen += take;
                if *seen < 5 {
                    return (take, false);
                }
                let left = u32::from_be_bytes(*len) as usize;
                if left == 0 {
                    *self = FrameCursor::default();
                    (take, true)
                } else {
                    *self = FrameCursor::Payload { left };
                    (take, false)
                }
            }
            FrameCursor::Payload { left } => {
                let take = (*left).min(input.len());
                *left -= take;
                if *left == 0 {
                    *self = FrameCursor::default();
                    (take, true)
                } else {
                    (take, false)
                }
            }
        }
    }
}

/// Encodes a response body in base64 as it streams. Each message ends with its own padding, so a
/// client can decode it as soon as it arrives (Envoy encodes each frame on its own too); within
/// a message, at most 2 bytes wait for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct TextEncoder {
    carry: Vec<u8>,
    cursor: FrameCursor,
}

impl TextEncoder {
    pub(crate) fn encode(&mut self, mut data: &[u8]) -> Bytes {
        let mut out = String::new();
        let mut pending = std::mem::take(&mut self.carry);
        while !data.is_empty() {
            let (take, ended) = self.cursor.advance(data);
            pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if ended {
                STANDARD.encode_string(&pending, &mut out);
                pending.clear();
            }
        }
        let whole = pending.len() / 3 * 3;
        STANDARD.encode_string(&pending[..whole], &mut out);
        self.carry = pending.split_off(whole);
        Bytes::from(out)
    }

    /// What is left (only for a stream that ended inside a frame), then `last`, padded.
    pub(crate) fn finish(&mut self, last: &[u8]) -> Bytes {
        let mut pending = std::mem::take(&mut self.carry);
        pending.extend_from_slice(last);
        Bytes::from(STANDARD.encode(&pending))
    }
}

/// A gRPC-Web response body: the gRPC answer's frames, re-encoded.
pub(crate) struct WebBody {
    inner: ProxyBody,
    text: Option<TextEncoder>,
    web: GrpcWeb,
    /// The answer was not gRPC (an HTTP error): its status is in the headers, its body dropped.
    discard: bool,
    done: bool,
}

impl WebBody {
    fn data(&mut self, bytes: &[u8], last: bool) -> Option<Bytes> {
        let out = match &mut self.text {
            Some(encoder) if last => encoder.finish(bytes),
            Some(encoder) => encoder.encode(bytes),
            None => Bytes::copy_from_slice(bytes),
        };
        (!out.is_empty()).then_some(out)
    }
}

impl Body for WebBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this
                        .text
                        .as_mut()
                        .map(|encoder| encoder.finish(&[]))
                        .filter(|rest| !rest.is_empty());
                    return Poll::Ready(rest.map(|rest| Ok(Frame::data(rest))));
                }
            };
            if this.discard {
                continue;
            }
            let frame = match frame.into_data() {
                Ok(data) if this.text.is_none() => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(data) => match this.data(&data, false) {
                    Some(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    None => continue,
                },
                Err(frame) => frame,
            };
            if let Ok(mut trailers) = frame.into_trailers() {
                if this.web.request_was_malformed() {
                    set_malformed_status(&mut trailers);
                }
                this.done = true;
                let last = trailer_frame(&trailers);
                let out = this.data(&last, true).unwrap_or(last);
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
