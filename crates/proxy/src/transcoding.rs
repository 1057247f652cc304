//! HTTP/JSON transcoding, a protocol of the protocol step: `GET /v1/shelves/1` becomes the gRPC
//! call `Bookstore/GetShelf` its `google.api.http` rule (or the config's `http.rules`) binds,
//! and the backend's protobuf answer becomes JSON, as ESP's transcoder does it.
//!
//! - Which method: [`service_config::ServiceConfig::http_route`] (the rules and the router are
//!   the config's); a call to a path no rule matches is ESP's 404.
//! - The request: its headers become a gRPC call's (POST, the method's path with the request's
//!   query kept for the credential steps, `application/grpc`, `te: trailers`) before any
//!   credential is looked at; its body is read only once the call is allowed, up to
//!   [`MAX_BODY_BYTES`], and becomes one message ([`transcode::request_message`]).
//! - The answer: unary answers are read whole (the HTTP status depends on the gRPC status at the
//!   end); a server-streaming answer is a JSON array written as messages arrive, its status
//!   decided by the first thing the backend sends (an error before any message is answered as
//!   a unary error). An error after messages closes the array and is put in `grpc-status` /
//!   `grpc-message` trailers (HTTP/2, or HTTP/1.1 clients that accept trailers), as Envoy does.
//!   Errors: the HTTP status of the gRPC code (ESPv2's table) and the body
//!   `{"code": …, "message": …, "details": […]}`.
//! - Client and bidirectional streaming methods are refused over HTTP, with a message saying so.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Incoming;
use prost_reflect::MessageDescriptor;
use service_config::{HttpBody, ServiceConfig};
use transcode::{BodyRule, JsonOptions};

use crate::body::ProxyBody;
use crate::headers;
use crate::wire::Rejection;

/// The largest HTTP/JSON request body the proxy reads (and the largest message of an answer it
/// translates): gRPC's default message limit, 4 MiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");

/// The API's HTTP routes, with the JSON options of `--transcoding-*`. Built with the route table.
pub(crate) struct HttpRoutes {
    config: Arc<ServiceConfig>,
    options: Arc<JsonOptions>,
}

impl HttpRoutes {
    /// `None` when no method of the API has an HTTP rule.
    pub(crate) fn new(config: &ServiceConfig, options: &JsonOptions) -> Option<Self> {
        config.http_routes().next()?;
        let mut options = options.clone();
        options
            .ignored_query_parameters
            .extend(credential_parameters(config));
        Some(Self {
            config: Arc::new(config.clone()),
            options: Arc::new(options),
        })
    }

    /// The call an HTTP request makes, if a rule binds its method and path: the gRPC path of the
    /// method (to route it) and what translating it needs.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<Transcoded> {
        let found = self.config.http_route(method.as_str(), path)?;
        let descriptor = &found.method.descriptor;
        Some(Transcoded {
            grpc_path: found.method.grpc_path.clone(),
            input: descriptor.input(),
            output: descriptor.output(),
            body: found.binding.body.clone(),
            response_body: found.binding.response_body.clone(),
            client_streaming: found.method.client_streaming,
            server_streaming: found.method.server_streaming,
            variables: found.variables,
            query: None,
            options: self.options.clone(),
        })
    }
}

/// The query parameters that carry credentials (the providers' JWT query locations, the API-key
/// locations): read by the credential steps, never fields of a message, so never "unknown"
/// (ESPv2 adds them to the transcoder's ignored parameters too).
fn credential_parameters(config: &ServiceConfig) -> Vec<String> {
    let jwt = config.providers().iter().flat_map(|p| &p.jwt_locations);
    let jwt = jwt.filter_map(|location| match location {
        service_config::JwtLocation::Query { name } => Some(name.clone()),
        service_config::JwtLocation::Header { .. } => None,
    });
    let keys = config.methods().iter().flat_map(|m| &m.api_key_locations);
    let keys = keys.filter_map(|location| match location {
        service_config::ApiKeyLocation::Query(name) => Some(name.clone()),
        _ => None,
    });
    let mut names: Vec<String> = jwt.chain(keys).collect();
    names.sort();
    names.dedup();
    names
}

/// One HTTP/JSON call matched to a method.
#[derive(Debug)]
pub(crate) struct Transcoded {
    /// The method's gRPC path, which routes the call.
    pub grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
    body: HttpBody,
    response_body: Option<String>,
    client_streaming: bool,
    server_streaming: bool,
    /// The path's variables: (field path, decoded value).
    variables: Vec<(String, String)>,
    /// The request's query string, kept for the message (the URI may change on the way).
    query: Option<String>,
    options: Arc<JsonOptions>,
}

impl std::fmt::Debug for HttpRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoutes").finish_non_exhaustive()
    }
}

impl Transcoded {
    /// Rewrites the request's headers into the gRPC call's: the method's path (the query kept,
    /// for the token and key locations that read it), POST, `application/grpc` over HTTP/2.
    /// Client and bidirectional streaming cannot be called this way.
    pub(crate) fn rewrite_request(
        &mut self,
        parts: &mut http::request::Parts,
    ) -> Result<(), Rejection> {
        let grpc_path = &self.grpc_path;
        if self.client_streaming {
            return Err(Rejection::StreamingOverHttp);
        }
        self.query = parts.uri.query().map(str::to_owned);
        let path_and_query = match &self.query {
            Some(query) => format!("{grpc_path}?{query}"),
            None => grpc_path.to_owned(),
        };
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| Rejection::Internal("a gRPC path that is not a URI path"))?,
        );
        parts.uri = http::Uri::from_parts(uri)
            .map_err(|_| Rejection::Internal("a gRPC path that is not a URI path"))?;
        parts.method = Method::POST;
        parts.version = Version::HTTP_2;
        let headers = &mut parts.headers;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.remove(CONTENT_LENGTH);
        headers.remove(http::header::CONTENT_ENCODING);
        headers.insert(TE, HeaderValue::from_static("trailers"));
        // The proxy parses the answer's messages: they must come uncompressed.
        headers.insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        headers.remove(GRPC_ENCODING);
        Ok(())
    }

    /// Reads the HTTP body (at most [`MAX_BODY_BYTES`]) and makes the call's one gRPC message of
    /// it, framed. Sent to the backend in place of the body.
    /// Each chunk must come within `idle` (the stream idle timeout), so a client cannot hold the
    /// call open by sending its body slowly.
    pub(crate) async fn request_message(
        &self,
        body: &mut Incoming,
        idle: std::time::Duration,
    ) -> Result<Bytes, Rejection> {
        let mut data = BytesMut::new();
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return Err(Rejection::StreamIdleTimeout),
            };
            let frame = frame.map_err(|_| Rejection::RequestBodyIncomplete)?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(Rejection::RequestBodyTooLarge);
                }
                data.extend_from_slice(&chunk);
            }
        }
        let rule = match &self.body {
            HttpBody::None => BodyRule::None,
            HttpBody::Whole => BodyRule::Whole,
            HttpBody::Field(field) => BodyRule::Field(field),
        };
        let message = transcode::request_message(
            &self.input,
            &self.variables,
            self.query.as_deref(),
            rule,
            &data,
            &self.options,
        )
        .map_err(Rejection::Transcode)?;
        Ok(frame_message(&message))
    }

    /// The gRPC answer (the backend's, or the proxy's own trailers-only one) as an HTTP/JSON
    /// answer. A proxy rejection already in HTTP form passes as it is.
    pub(crate) async fn respond(self, response: Response<ProxyBody>) -> Response<TranscodedBody> {
        let (parts, body) = response.into_parts();
        if !headers::is_grpc(&parts.headers) {
            return Response::from_parts(parts, TranscodedBody::new(body));
        }
        let mut reader = GrpcReader {
            body,
            buffer: BytesMut::new(),
            status: status_of(&parts.headers),
        };
        if self.server_streaming {
            self.respond_streaming(parts.headers, reader).await
        } else {
            let first = reader.next().await;
            let answer = match first {
                Event::Message(message) => match reader.next().await {
                    Event::End(status) if status.code == 0 => self.json(&message),
                    Event::End(status) => Err(status),
                    Event::Message(_) => Err(Status::internal(
                        "the backend answered a unary call with more than one message",
                    )),
                },
                Event::End(status) if status.code == 0 => Err(Status::internal(
                    "the backend answered a unary call with no message",
                )),
                Event::End(status) => Err(status),
            };
            match answer {
                Ok(json) => json_response(StatusCode::OK, parts.headers, json),
                Err(status) => error_response(parts.headers, &status),
            }
        }
    }

    async fn respond_streaming(
        self,
        headers: HeaderMap,
        mut reader: GrpcReader,
    ) -> Response<TranscodedBody> {
        let first = match reader.next().await {
            Event::Message(message) => match self.json(&message) {
                Ok(json) => json,
                Err(status) => return error_response(headers, &status),
            },
            Event::End(status) if status.code == 0 => {
                return json_response(StatusCode::OK, headers, Bytes::from_static(b"[]"));
            }
            Event::End(status) => return error_response(headers, &status),
        };
        let mut opening = BytesMut::with_capacity(first.len() + 1);
        opening.extend_from_slice(b"[");
        opening.extend_from_slice(&first);
        // The rest of the array, as the backend sends it; `None` state: the array is closed.
        let rest = futures::stream::unfold(Some((self, reader)), |state| async move {
            let (call, mut reader) = state?;
            match reader.next().await {
                Event::Message(message) => match call.json(&message) {
                    Ok(json) => {
                        let mut item = BytesMut::with_capacity(json.len() + 1);
                        item.extend_from_slice(b",");
                        item.extend_from_slice(&json);
                        Some((vec![Frame::data(item.freeze())], Some((call, reader))))
                    }
                    Err(status) => Some((closing(&status), None)),
                },
                Event::End(status) => Some((closing(&status), None)),
            }
        });
        let frames = futures::stream::iter([Frame::data(opening.freeze())])
            .chain(rest.flat_map(futures::stream::iter))
            .map(Ok::<_, Infallible>);
        let mut response = Response::new(TranscodedBody::new(StreamBody::new(frames)));
        *response.headers_mut() = headers;
        set_json_headers(response.headers_mut());
        response
    }

    /// One answer message as JSON.
    fn json(&self, message: &[u8]) -> Result<Bytes, Status> {
        transcode::response_json(
            &self.output,
            self.response_body.as_deref(),
            message,
            &self.options,
        )
        .map(Bytes::from)
        .map_err(|err| Status::internal(&err.to_string()))
    }
}

/// The end of a streamed array: `]`, and a failure's status in the trailers.
fn closing(status: &Status) -> Vec<Frame<Bytes>> {
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

/// A gRPC message with its 5-byte prefix (uncompressed).
fn frame_message(message: &[u8]) -> Bytes {
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
struct Status {
    code: u32,
    message: String,
    details: Option<Bytes>,
}

impl Status {
    fn internal(message: &str) -> Self {
        Self {
            code: tonic::Code::Internal as u32,
            message: message.to_owned(),
            details: None,
        }
    }
}

/// The status in `headers`, if they carry one (tonic reads `grpc-status`, the percent-encoded
/// `grpc-message` and the base64 `grpc-status-details-bin`).
fn status_of(headers: &HeaderMap) -> Option<Status> {
    let status = tonic::Status::from_header_map(headers)?;
    let details = status.details();
    Some(Status {
        code: status.code() as u32,
        message: status.message().to_owned(),
        details: (!details.is_empty()).then(|| Bytes::copy_from_slice(details)),
    })
}

/// What the backend sent next.
enum Event {
    Message(Bytes),
    /// The status: from the trailers (or a trailers-only answer's headers); a body that ended
    /// without one, or a message the proxy will not translate, is the proxy's own status.
    End(Status),
}

/// Reads a gRPC answer's messages one at a time (each at most [`MAX_BODY_BYTES`]).
struct GrpcReader {
    body: ProxyBody,
    buffer: BytesMut,
    /// A trailers-only answer's status, from its headers.
    status: Option<Status>,
}

impl GrpcReader {
    async fn next(&mut self) -> Event {
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
    fn complete_message(&mut self) -> Option<Event> {
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

/// The body of an HTTP/JSON answer.
pub(crate) struct TranscodedBody(UnsyncBoxBody<Bytes, Infallible>);

impl TranscodedBody {
    fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        Self(UnsyncBoxBody::new(body))
    }

    fn full(bytes: Bytes) -> Self {
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

fn set_json_headers(headers: &mut HeaderMap) {
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

fn json_response(
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
fn error_response(headers: HeaderMap, status: &Status) -> Response<TranscodedBody> {
    let http = StatusCode::from_u16(transcode::http_status(status.code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = transcode::error_body(status.code, &status.message, status.details.as_deref());
    json_response(http, headers, Bytes::from(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn log() -> crate::body::CallLog {
        crate::body::CallLog::new(
            "127.0.0.1:1".parse().unwrap(),
            std::time::Instant::now(),
            &crate::access_log::RejectedLines::new(Default::default()),
        )
    }

    fn reader(bytes: &[u8]) -> GrpcReader {
        GrpcReader {
            body: ProxyBody::empty(log()),
            buffer: BytesMut::from(bytes),
            status: None,
        }
    }

    #[test]
    fn messages_are_read_whole_and_bounded() {
        let two = [frame_message(b"ab"), frame_message(b"")].concat();
        let mut r = reader(&two);
        assert!(matches!(r.complete_message(), Some(Event::Message(m)) if &m[..] == b"ab"));
        assert!(matches!(r.complete_message(), Some(Event::Message(m)) if m.is_empty()));
        assert!(r.complete_message().is_none(), "nothing left");
        // A partial frame waits for more.
        let framed = frame_message(b"abc");
        for cut in 0..framed.len() {
            assert!(
                reader(&framed[..cut]).complete_message().is_none(),
                "cut {cut}"
            );
        }
        // Compressed, or over the bound: the proxy's INTERNAL, not a wait.
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert!(
            matches!(reader(&compressed).complete_message(), Some(Event::End(s)) if s.code == 13)
        );
        let over = u32::try_from(MAX_BODY_BYTES + 1).unwrap().to_be_bytes();
        let header = [&[0u8][..], &over[..]].concat();
        assert!(matches!(reader(&header).complete_message(), Some(Event::End(s)) if s.code == 13));
    }

    #[tokio::test]
    async fn a_body_without_a_status_or_cut_inside_a_message_is_internal() {
        let mut r = reader(&frame_message(b"abc")[..4]);
        assert!(
            matches!(r.next().await, Event::End(s) if s.code == 13 && s.message.contains("inside"))
        );
        let mut r = reader(&[]);
        assert!(
            matches!(r.next().await, Event::End(s) if s.code == 13 && s.message.contains("without a status"))
        );
        let mut r = reader(&[]);
        r.status = Some(Status::internal("x"));
        assert!(matches!(r.next().await, Event::End(s) if s.message == "x"));
    }

    #[test]
    fn a_stream_closes_its_array_and_reports_a_failure_in_trailers() {
        let ok = closing(&Status {
            code: 0,
            message: String::new(),
            details: None,
        });
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].data_ref().unwrap(), &Bytes::from_static(b"]"));
        let failed = closing(&Status {
            code: 14,
            message: "gone away".into(),
            details: None,
        });
        assert_eq!(failed.len(), 2);
        let trailers = failed[1].trailers_ref().unwrap();
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(trailers["grpc-message"], "gone%20away");
    }

    #[test]
    fn statuses_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert!(status_of(&headers).is_none());
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("no%20such%20shelf"),
        );
        assert_eq!(
            status_of(&headers),
            Some(Status {
                code: 5,
                message: "no such shelf".into(),
                details: None
            })
        );
    }
}
