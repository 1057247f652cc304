//! The protocol step: which protocol a call speaks, and the translation to and from gRPC (the
//! only protocol the backend is spoken to in). gRPC over HTTP/2 passes as it is; gRPC-Web
//! (`grpc_web.rs`, HTTP/1.1 or HTTP/2) is translated; so is a plain HTTP request that an HTTP
//! rule binds to a method (`transcoding.rs`, found by the route step); anything else is refused
//! with [`Rejection::NotGrpc`] (415).
//!
//! It runs before any credential is looked at, so a call that can never be served costs no
//! signature check and no key-server request, and cannot tell a caller whether a token or key is
//! valid (issue: a key-validity oracle over HTTP/1.1). The translation of the request happens
//! here too, so the checks after it see the call as the backend will.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use http::{Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::grpc_web::{GrpcWeb, TextDecoder, WebBody};
use crate::headers;
use crate::request_body::SanitizedBody;
use crate::transcoding::{Transcoded, TranscodedBody};
use crate::wire::Rejection;

/// The protocol a call speaks, read from its headers alone (the answer's form depends on it,
/// whatever step refuses the call).
#[derive(Debug)]
pub(crate) enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// gRPC-Web; its request body is decoded with the decoder, when text.
    GrpcWeb(GrpcWeb, Option<TextDecoder>),
    /// HTTP/JSON: a request an HTTP rule binds to a method (set by the route step).
    Transcoded(Box<Transcoded>),
    /// Something else. `grpc_content_type`: it claimed `application/grpc` (over HTTP/1.1).
    Other { grpc_content_type: bool },
}

impl Protocol {
    pub(crate) fn detect(parts: &http::request::Parts) -> Self {
        let grpc = headers::is_grpc(&parts.headers);
        if grpc && parts.version == Version::HTTP_2 {
            Protocol::Grpc
        } else if let Some(web) = crate::grpc_web::detect(&parts.headers) {
            Protocol::GrpcWeb(web, None)
        } else {
            Protocol::Other {
                grpc_content_type: grpc,
            }
        }
    }

    /// Whether the call may be an HTTP/JSON one, for the route step to look up in the HTTP
    /// rules: a plain HTTP request (no gRPC or gRPC-Web content type).
    pub(crate) fn may_transcode(&self) -> bool {
        matches!(
            self,
            Protocol::Other {
                grpc_content_type: false
            }
        )
    }

    /// The step: `Ok` for a protocol the proxy serves, with the request rewritten into gRPC;
    /// [`Rejection::NotGrpc`] (415) for anything else.
    pub(crate) fn require(&mut self, parts: &mut http::request::Parts) -> Result<(), Rejection> {
        match self {
            Protocol::Grpc => Ok(()),
            Protocol::GrpcWeb(web, decoder) => {
                *decoder = web.rewrite_request(parts);
                Ok(())
            }
            Protocol::Transcoded(call) => call.rewrite_request(parts),
            Protocol::Other { .. } => Err(Rejection::NotGrpc),
        }
    }

    /// Whether the proxy's own answers take the gRPC form (trailers-only) before translation.
    pub(crate) fn answers_in_grpc(&self) -> bool {
        match self {
            Protocol::Grpc | Protocol::GrpcWeb(..) => true,
            Protocol::Transcoded(_) => false,
            Protocol::Other { grpc_content_type } => *grpc_content_type,
        }
    }

    /// The request body on its way to the backend, when it needs no reading: every protocol
    /// but HTTP/JSON, whose body is given back (`Err`) for [`Self::request_body`].
    pub(crate) fn passed_body(&mut self, body: Incoming) -> Result<SanitizedBody, Incoming> {
        match self {
            Protocol::GrpcWeb(_, decoder) => {
                let body = SanitizedBody::new(body);
                Ok(match decoder.take() {
                    Some(decoder) => body.decoding_text(decoder),
                    None => body,
                })
            }
            Protocol::Transcoded(_) => Err(body),
            Protocol::Grpc | Protocol::Other { .. } => Ok(SanitizedBody::new(body)),
        }
    }

    /// The request body on its way to the backend. An HTTP/JSON call's body is read here (the
    /// call is allowed by now) and becomes its message; a body that cannot is refused.
    /// Reading it waits at most `idle` (the stream idle timeout) for each chunk.
    pub(crate) async fn request_body(
        &mut self,
        body: Incoming,
        idle: std::time::Duration,
    ) -> Result<SanitizedBody, Rejection> {
        let mut body = match self.passed_body(body) {
            Ok(body) => return Ok(body),
            Err(body) => body,
        };
        match self {
            Protocol::Transcoded(call) => {
                let message = call.request_message(&mut body, idle).await?;
                Ok(SanitizedBody::new(body).replaced_by(message))
            }
            // `passed_body` took every other protocol.
            _ => Ok(SanitizedBody::new(body)),
        }
    }

    /// The gRPC answer (the backend's or the proxy's) in the caller's protocol. Only an
    /// HTTP/JSON answer waits (for the backend's message); its future is boxed, so that every
    /// other call's future stays small.
    pub(crate) fn respond(
        self,
        response: Response<ProxyBody>,
    ) -> Either<Ready<Response<ResponseBody>>, BoxFuture<'static, Response<ResponseBody>>> {
        match self {
            Protocol::GrpcWeb(web, _) => {
                Either::Left(ready(web.respond(response).map(ResponseBody::GrpcWeb)))
            }
            Protocol::Transcoded(call) => Either::Right(Box::pin(async move {
                (*call).respond(response).await.map(ResponseBody::Json)
            })),
            Protocol::Grpc | Protocol::Other { .. } => {
                Either::Left(ready(response.map(ResponseBody::Grpc)))
            }
        }
    }
}

/// The body of every answer, in the caller's protocol.
pub(crate) enum ResponseBody {
    Grpc(ProxyBody),
    GrpcWeb(WebBody),
    Json(TranscodedBody),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Grpc(body) => Pin::new(body).poll_frame(cx),
            ResponseBody::GrpcWeb(body) => Pin::new(body).poll_frame(cx),
            ResponseBody::Json(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Grpc(body) => body.is_end_stream(),
            ResponseBody::GrpcWeb(body) => body.is_end_stream(),
            ResponseBody::Json(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Grpc(body) => body.size_hint(),
            ResponseBody::GrpcWeb(body) => body.size_hint(),
            ResponseBody::Json(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_over_http2_or_grpc_web_over_any_version() {
        let table = [
            (Version::HTTP_2, Some("application/grpc"), true),
            (Version::HTTP_2, Some("application/grpc+proto"), true),
            (Version::HTTP_2, Some("application/json"), false),
            (Version::HTTP_2, Some("application/grpc-web"), true),
            (Version::HTTP_11, Some("application/grpc-web"), true),
            (
                Version::HTTP_11,
                Some("application/grpc-web-text+proto"),
                true,
            ),
            (Version::HTTP_11, Some("application/grpc-web+json"), false),
            (Version::HTTP_2, None, false),
            (Version::HTTP_11, Some("application/grpc"), false),
            (Version::HTTP_11, Some("application/json"), false),
            (Version::HTTP_10, Some("application/grpc"), false),
        ];
        for (version, content_type, ok) in table {
            let mut request = http::Request::builder().version(version).uri("/p.S/M");
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            let mut protocol = Protocol::detect(&parts);
            assert_eq!(
                protocol.require(&mut parts).is_ok(),
                ok,
                "{version:?} {content_type:?}"
            );
            if ok {
                assert_eq!(
                    parts.headers["content-type"]
                        .to_str()
                        .unwrap()
                        .split('+')
                        .next(),
                    Some("application/grpc")
                );
            }
        }
    }
}
