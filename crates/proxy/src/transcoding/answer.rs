//! The HTTP/JSON answer: its body, its JSON headers, a failed call's status and
//! `{"code", "message", "details"}` body, and the end of a streamed array.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;

use super::frames::Status;
use super::{GRPC_ACCEPT_ENCODING, GRPC_ENCODING, GRPC_MESSAGE, GRPC_STATUS, GRPC_STATUS_DETAILS};

/// The end of a streamed array: `]`, and a failure's status in the trailers.
pub(super) fn closing(status: &Status) -> Vec<Frame<Bytes>> {
    let mut frames = vec![Frame::data(Bytes::from_static(b"]"))];
    if status.code != 0 {
        let mut trailers = HeaderMap::new();
        let code = tonic::Code::from_i32(i32::try_from(status.code).unwrap_or(2));
        // Fails only for a message that cannot be a header value even percent-encoded.
        let _ = tonic::Status::new(code, status.message.clone()).add_header(&mut trailers);
        frames.push(Frame::trailers(trailers));
    }
    frames
}

/// The body of an HTTP/JSON answer.
pub(crate) struct TranscodedBody(UnsyncBoxBody<Bytes, Infallible>);

impl TranscodedBody {
    pub(super) fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        Self(UnsyncBoxBody::new(body))
    }

    pub(super) fn full(bytes: Bytes) -> Self {
        Self::new(http_body_util::Full::new(bytes))
    }
}

impl http_body::Body for TranscodedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

pub(super) fn set_json_headers(headers: &mut HeaderMap) {
    for name in [
        GRPC_STATUS,
        GRPC_MESSAGE,
        GRPC_STATUS_DETAILS,
        GRPC_ENCODING,
        GRPC_ACCEPT_ENCODING,
        CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

pub(super) fn json_response(
    status: StatusCode,
    mut headers: HeaderMap,
    json: Bytes,
) -> Response<TranscodedBody> {
    set_json_headers(&mut headers);
    let mut response = Response::new(TranscodedBody::full(json));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A failed call: the HTTP status of its gRPC code and `{"code", "message", "details"}`.
pub(super) fn error_response(headers: HeaderMap, status: &Status) -> Response<TranscodedBody> {
    let http = StatusCode::from_u16(transcode::http_status(status.code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = transcode::error_body(status.code, &status.message, status.details.as_deref());
    json_response(http, headers, Bytes::from(body))
}
