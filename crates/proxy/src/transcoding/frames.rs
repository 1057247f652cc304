//! gRPC's framing, as the transcoder meets it: the request's one message framed for the
//! backend, and the backend's answer read message by message (each bounded by
//! [`MAX_BODY_BYTES`]) up to the status it ends with.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt as _;

use super::MAX_BODY_BYTES;
use crate::body::ProxyBody;

/// A gRPC message with its 5-byte prefix (uncompressed).
pub(super) fn frame_message(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.extend_from_slice(&[0]);
    // Bounded by MAX_BODY_BYTES's message, far below u32::MAX.
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(message);
    framed.freeze()
}

/// A gRPC status as the transcoder reads it from headers or trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) code: u32,
    pub(super) message: String,
    pub(super) details: Option<Bytes>,
}

impl Status {
    pub(super) fn internal(message: &str) -> Self {
        Self {
            code: tonic::Code::Internal as u32,
            message: message.to_owned(),
            details: None,
        }
    }
}

/// The status in `headers`, if they carry one (tonic reads `grpc-status`, the percent-encoded
/// `grpc-message` and the base64 `grpc-status-details-bin`).
pub(super) fn status_of(headers: &HeaderMap) -> Option<Status> {
    let status = tonic::Status::from_header_map(headers)?;
    let details = status.details();
    Some(Status {
        code: status.code() as u32,
        message: status.message().to_owned(),
        details: (!details.is_empty()).then(|| Bytes::copy_from_slice(details)),
    })
}

/// What the backend sent next.
pub(super) enum Event {
    Message(Bytes),
    /// The status: from the trailers (or a trailers-only answer's headers); a body that ended
    /// without one, or a message the proxy will not translate, is the proxy's own status.
    End(Status),
}

/// Reads a gRPC answer's messages one at a time (each at most [`MAX_BODY_BYTES`]).
pub(super) struct GrpcReader {
    pub(super) body: ProxyBody,
    pub(super) buffer: BytesMut,
    /// A trailers-only answer's status, from its headers.
    pub(super) status: Option<Status>,
}

impl GrpcReader {
    pub(super) async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.complete_message() {
                return event;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            self.status = status_of(trailers);
                        }
                    }
                },
                Some(Err(never)) => match never {},
                None => {
                    return Event::End(match self.status.take() {
                        _ if !self.buffer.is_empty() => {
                            Status::internal("the backend's answer ended inside a message")
                        }
                        Some(status) => status,
                        None => Status::internal("the backend's answer ended without a status"),
                    });
                }
            }
        }
    }

    /// The next whole message in the buffer, or the reason not to wait for one.
    pub(super) fn complete_message(&mut self) -> Option<Event> {
        if self.buffer.len() < 5 {
            return None;
        }
        if self.buffer[0] != 0 {
            return Some(Event::End(Status::internal(
                "the backend sent a compressed message, which the proxy cannot translate",
            )));
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_BODY_BYTES {
            return Some(Event::End(Status::internal(
                "the backend's message is over the proxy's 4 MiB limit for HTTP/JSON answers",
            )));
        }
        if self.buffer.len() < 5 + len {
            return None;
        }
        self.buffer.advance(5);
        Some(Event::Message(self.buffer.split_to(len).freeze()))
    }
}
