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
//!
//! Parts: [`frames`] frames the request's message and reads the backend's answer message by
//! message; [`answer`] is the HTTP/JSON answer's body, headers and error form.

mod answer;
mod frames;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Incoming;
use prost_reflect::MessageDescriptor;
use service_config::{HttpBody, ServiceConfig};
use transcode::{BodyRule, JsonOptions};

pub(crate) use answer::TranscodedBody;
use answer::{closing, error_response, json_response, set_json_headers};
use frames::{Event, GrpcReader, Status, frame_message, status_of};

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

#[cfg(test)]
mod tests;
