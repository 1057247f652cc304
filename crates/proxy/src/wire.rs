//! The wire table: every answer the proxy gives itself ([`Rejection`]) and every ending it puts
//! on a stream it is relaying ([`StreamEnd`]), mapped to gRPC code, HTTP status, message and
//! headers here and nowhere else. A rejection is always a response, never a dropped connection.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use tonic::Code;

use crate::body::{CallLog, ProxyBody};

/// Why the proxy answered a call instead of the backend. The `Display` strings are what callers
/// read in `grpc-message` or the JSON body's `message`: they are a contract (ESP's strings where
/// ESP has one; README.md lists them).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A JWT check failed (ESP's jwt_verify_lib messages; see `authn::AuthError`), or, esprit
    /// extension, a valid token's caller is not in the requirement's `x_esprit_allowed_callers`
    /// (`PERMISSION_DENIED`, "Caller in Jwt is not allowed" / "Jwt has no verified email to
    /// identify the caller"). Code, status, message and challenge come from `AuthError`.
    #[error(transparent)]
    Auth(authn::AuthError),
    /// ESP: a path that is not a method of the configured API.
    #[error("The current request is not defined by this API.")]
    UndefinedMethod,
    /// A method of the API called without gRPC framing (HTTP/1.1, or not `application/grpc`).
    /// Answered before any credential is looked at.
    #[error(
        "This method is served over gRPC only: call it over HTTP/2 with content-type application/grpc."
    )]
    NotGrpc,
    /// The backend could not be reached, or reset the call before answering.
    #[error("upstream connect error or disconnect/reset before headers. reset reason: {0}")]
    BackendUnavailable(&'static str),
    /// The caller's `grpc-timeout` passed before the backend answered.
    #[error("Deadline Exceeded")]
    DeadlineExceeded,
    /// No frame either way for the stream idle timeout (Envoy's `stream_idle_timeout` text).
    #[error("stream timeout")]
    StreamIdleTimeout,
    /// ESP: the method needs an API key and none was found at its locations.
    #[error(
        "Method doesn't allow unregistered callers (callers without established identity). \
         Please use API Key or other form of API consumer identity to call this API."
    )]
    ApiKeyMissing,
    /// ESP: the key server does not know the key, or it was revoked, or it is not a key at all
    /// (too long, or the key server refused the question).
    #[error("API key not valid. Please pass a valid API key.")]
    ApiKeyInvalid,
    /// The key server could not be asked (esprit fails closed; ESP fails open).
    #[error("API key could not be checked: the key service is unavailable.")]
    ApiKeyCheckUnavailable,
    /// Too many key checks are outstanding. Never opened by `--service-control-fail-open`:
    /// saturating the key server must not be a way in.
    #[error("API key could not be checked: too many checks are in progress.")]
    ApiKeyCheckOverloaded,
    /// A state the proxy should never be in; answered rather than forwarded unchecked.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// A `grpc-web-text` request whose body is not base64 (Envoy's `grpc_web` filter text).
    /// The backend's stream is reset; the caller gets this in the answer's status.
    #[error("Bad gRPC-web request, invalid base64 data.")]
    GrpcWebBadText,
    /// A CORS preflight from an origin `--cors-allow-origin` / `--cors-allow-origin-regex` does
    /// not allow. Answered without any CORS header, so the browser refuses the call.
    #[error("The CORS preflight request's origin is not allowed.")]
    CorsOriginNotAllowed,
    /// An HTTP/JSON call whose path, query or body does not make the method's request message
    /// (the transcoder's message: which parameter or field, and why).
    #[error(transparent)]
    Transcode(transcode::TranscodeError),
    /// An HTTP/JSON call's body over [`crate::transcoding::MAX_BODY_BYTES`].
    #[error("The request body is over the 4 MiB limit of HTTP/JSON calls.")]
    RequestBodyTooLarge,
    /// An HTTP/JSON call's body the client did not finish sending.
    #[error("The request body ended before it was complete.")]
    RequestBodyIncomplete,
    /// An HTTP rule binds a client- or bidirectional-streaming method: not callable over HTTP.
    #[error(
        "This method streams its requests, which HTTP/JSON cannot carry: call it over gRPC or gRPC-Web."
    )]
    StreamingOverHttp,
    /// ESPv2: an `OPTIONS` request, with CORS on, lacking a preflight's headers.
    #[error(
        "The CORS preflight request is missing one (or more) of the following required headers: \
         Origin, Access-Control-Request-Method"
    )]
    CorsPreflightIncomplete,
}

impl Rejection {
    /// The gRPC status code. Exhaustive on purpose: a new rejection must choose its code.
    pub fn code(&self) -> Code {
        match self {
            Rejection::Auth(err) => Code::from_i32(i32::from(err.code().as_u16())),
            Rejection::Internal(_) => Code::Internal,
            Rejection::ApiKeyMissing => Code::Unauthenticated,
            Rejection::ApiKeyInvalid => Code::InvalidArgument,
            Rejection::ApiKeyCheckUnavailable => Code::Unavailable,
            Rejection::ApiKeyCheckOverloaded => Code::Unavailable,
            Rejection::UndefinedMethod => Code::Unimplemented,
            Rejection::NotGrpc => Code::InvalidArgument,
            Rejection::BackendUnavailable(_) => Code::Unavailable,
            Rejection::DeadlineExceeded => Code::DeadlineExceeded,
            Rejection::StreamIdleTimeout => Code::DeadlineExceeded,
            Rejection::GrpcWebBadText => Code::InvalidArgument,
            Rejection::CorsOriginNotAllowed => Code::PermissionDenied,
            Rejection::CorsPreflightIncomplete => Code::InvalidArgument,
            Rejection::Transcode(err) => {
                Code::from_i32(i32::try_from(err.grpc_code()).unwrap_or(2))
            }
            Rejection::RequestBodyTooLarge => Code::ResourceExhausted,
            Rejection::RequestBodyIncomplete => Code::InvalidArgument,
            Rejection::StreamingOverHttp => Code::Unimplemented,
        }
    }

    /// The HTTP status: what HTTP/1.1 callers see, and for [`Rejection::UndefinedMethod`] also
    /// gRPC callers (ESP answers 404, which gRPC clients read as `UNIMPLEMENTED`).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Rejection::Auth(err) => {
                StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            Rejection::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::ApiKeyMissing => StatusCode::UNAUTHORIZED,
            Rejection::ApiKeyInvalid => StatusCode::BAD_REQUEST,
            Rejection::ApiKeyCheckUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::ApiKeyCheckOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::UndefinedMethod => StatusCode::NOT_FOUND,
            Rejection::NotGrpc => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BackendUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Rejection::StreamIdleTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::GrpcWebBadText => StatusCode::BAD_REQUEST,
            Rejection::CorsOriginNotAllowed => StatusCode::FORBIDDEN,
            Rejection::CorsPreflightIncomplete => StatusCode::BAD_REQUEST,
            Rejection::Transcode(err) => {
                StatusCode::from_u16(transcode::http_status(err.grpc_code()))
                    .unwrap_or(StatusCode::BAD_REQUEST)
            }
            Rejection::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RequestBodyIncomplete => StatusCode::BAD_REQUEST,
            Rejection::StreamingOverHttp => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Whether a gRPC caller gets the HTTP status too (ESP: 404 for an undefined method), rather
    /// than 200 with the status in `grpc-status`.
    fn http_status_for_grpc(&self) -> bool {
        matches!(self, Rejection::UndefinedMethod)
    }

    /// Whether the answer is gRPC (trailers-only) for a caller that sent a gRPC content type.
    /// A call refused for its protocol, or a CORS preflight (never a gRPC call), is answered in
    /// plain HTTP whatever it claimed to be.
    fn answer_in_grpc(&self, grpc: bool) -> bool {
        grpc && !matches!(
            self,
            Rejection::NotGrpc
                | Rejection::CorsOriginNotAllowed
                | Rejection::CorsPreflightIncomplete
        )
    }

    /// `WWW-Authenticate` (RFC 6750) for JWT failures.
    fn www_authenticate(&self) -> Option<HeaderValue> {
        match self {
            Rejection::Auth(err) => Some(HeaderValue::from_static(err.www_authenticate())),
            _ => None,
        }
    }

    /// The response for a gRPC caller (trailers-only: status in the headers, no body) or for an
    /// HTTP caller (status code and a JSON body `{"code": <HTTP status>, "message": …}`, as ESPv2).
    pub(crate) fn into_response(self, grpc: bool, mut log: CallLog) -> Response<ProxyBody> {
        log.set_rejected();
        let response = self.bare_response(grpc);
        log.set_status(self.code());
        log.set_http_status(response.status());
        if let Rejection::Auth(err) = &self {
            log.set_auth_failure(err);
        }
        response.map(|bytes| match bytes {
            Some(bytes) => ProxyBody::full(bytes, log),
            None => ProxyBody::empty(log),
        })
    }

    /// The response without its body's access log: what the table test looks at.
    fn bare_response(&self, grpc: bool) -> Response<Option<Bytes>> {
        let message = self.to_string();
        let mut response = if self.answer_in_grpc(grpc) {
            let status = tonic::Status::new(self.code(), message);
            let mut response = Response::new(None);
            if self.http_status_for_grpc() {
                *response.status_mut() = self.http_status();
            }
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            // Fails only for a message that cannot be a header value; ours are ASCII constants.
            let _ = status.add_header(headers);
            response
        } else {
            let status = self.http_status();
            let body = serde_json::json!({ "code": status.as_u16(), "message": message });
            let mut response = Response::new(Some(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        };
        if let Some(value) = self.www_authenticate() {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// How the proxy ends a response stream it was relaying, in the trailers (the headers went out
/// already, so only `grpc-status` and `grpc-message` can say what happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The caller's `grpc-timeout` passed while the response streamed.
    DeadlineExceeded,
    /// The backend's stream failed after its headers (reset, connection lost).
    BackendReset,
    /// No frame in either direction for the stream idle timeout (Envoy's `stream_idle_timeout`).
    IdleTimeout,
}

impl StreamEnd {
    pub(crate) fn status(self) -> tonic::Status {
        match self {
            StreamEnd::DeadlineExceeded => {
                tonic::Status::new(Code::DeadlineExceeded, "Deadline Exceeded")
            }
            StreamEnd::BackendReset => {
                tonic::Status::new(Code::Unavailable, "upstream disconnect/reset after headers")
            }
            StreamEnd::IdleTimeout => {
                let rejection = Rejection::StreamIdleTimeout;
                tonic::Status::new(rejection.code(), rejection.to_string())
            }
        }
    }
}

/// Upper-case gRPC code names, as in the gRPC spec and in ESP's logs. The one copy in the
/// workspace.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests;
