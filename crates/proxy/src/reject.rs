//! Answers the proxy gives itself. A rejection is always a response, never a dropped connection.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use tonic::Code;

use crate::body::{CallLog, ProxyBody};

/// Why the proxy answered a call instead of the backend. The `Display` strings are what callers
/// read in `grpc-message` or the JSON body's `message`: they are a contract (ESP_REFERENCE.md).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A JWT check failed (ESP's jwt_verify_lib messages; see `authn::AuthError`).
    #[error(transparent)]
    Auth(authn::AuthError),
    /// ESP: a path that is not a method of the configured API.
    #[error("The current request is not defined by this API.")]
    UndefinedMethod,
    /// A method of the API called without gRPC framing (HTTP/1.1, or not `application/grpc`).
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
    /// ESP: the method needs an API key and none was found at its locations.
    #[error(
        "Method doesn't allow unregistered callers (callers without established identity). \
         Please use API Key or other form of API consumer identity to call this API."
    )]
    ApiKeyMissing,
    /// ESP: the key server does not know the key, or it was revoked.
    #[error("API key not valid. Please pass a valid API key.")]
    ApiKeyInvalid,
    /// The key server could not be asked (esprit fails closed; ESP fails open).
    #[error("API key could not be checked: the key service is unavailable.")]
    ApiKeyCheckUnavailable,
    /// A state the proxy should never be in; answered rather than forwarded unchecked.
    #[error("internal error: {0}")]
    Internal(&'static str),
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
            Rejection::UndefinedMethod => Code::Unimplemented,
            Rejection::NotGrpc => Code::InvalidArgument,
            Rejection::BackendUnavailable(_) => Code::Unavailable,
            Rejection::DeadlineExceeded => Code::DeadlineExceeded,
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
            Rejection::UndefinedMethod => StatusCode::NOT_FOUND,
            Rejection::NotGrpc => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BackendUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response for a gRPC caller (trailers-only: status in the headers, no body) or for an
    /// HTTP caller (status code and a JSON body `{"code": <HTTP status>, "message": …}`, as ESPv2).
    pub(crate) fn into_response(self, grpc: bool, mut log: CallLog) -> Response<ProxyBody> {
        log.set_rejected();
        log.set_status(self.code());
        log.set_http_status(if grpc && !matches!(self, Rejection::UndefinedMethod) {
            StatusCode::OK
        } else {
            self.http_status()
        });
        let message = self.to_string();
        let www_authenticate = match &self {
            Rejection::Auth(err) => Some(HeaderValue::from_static(err.www_authenticate())),
            _ => None,
        };
        let mut response = self.into_bare_response(grpc, message);
        if let Some(value) = www_authenticate {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        response.map(|bytes| match bytes {
            Some(bytes) => ProxyBody::full(bytes, log),
            None => ProxyBody::empty(log),
        })
    }

    fn into_bare_response(self, grpc: bool, message: String) -> Response<Option<Bytes>> {
        if grpc {
            let status = tonic::Status::new(self.code(), message);
            let mut response = Response::new(None);
            if matches!(self, Rejection::UndefinedMethod) {
                *response.status_mut() = StatusCode::NOT_FOUND;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_mapping_table() {
        let table = [
            (
                Rejection::UndefinedMethod,
                Code::Unimplemented,
                404,
                "The current request is not defined by this API.",
            ),
            (
                Rejection::NotGrpc,
                Code::InvalidArgument,
                415,
                "This method is served over gRPC only: call it over HTTP/2 with content-type application/grpc.",
            ),
            (
                Rejection::BackendUnavailable("connection failure"),
                Code::Unavailable,
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            (
                Rejection::DeadlineExceeded,
                Code::DeadlineExceeded,
                504,
                "Deadline Exceeded",
            ),
        ];
        for (rejection, code, http, message) in table {
            assert_eq!(rejection.code(), code, "{rejection:?}");
            assert_eq!(rejection.http_status().as_u16(), http, "{rejection:?}");
            assert_eq!(rejection.to_string(), message);
        }
    }
}
