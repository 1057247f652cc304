//! The protocol step: the API's methods are served over gRPC only (HTTP/2, `application/grpc…`).
//! It runs before any credential is looked at, so a call that can never be served costs no
//! signature check and no key-server request, and cannot tell a caller whether a token or key is
//! valid (issue: a key-validity oracle over HTTP/1.1). HTTP/JSON transcoding and gRPC-Web would
//! be further protocols accepted here.

use http::Version;

use crate::headers;
use crate::wire::Rejection;

/// `Ok` for a gRPC call; [`Rejection::NotGrpc`] (415) for anything else.
pub(crate) fn require_grpc(parts: &http::request::Parts) -> Result<(), Rejection> {
    if parts.version == Version::HTTP_2 && headers::is_grpc(&parts.headers) {
        Ok(())
    } else {
        Err(Rejection::NotGrpc)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_over_http2_only() {
        let table = [
            (Version::HTTP_2, Some("application/grpc"), true),
            (Version::HTTP_2, Some("application/grpc+proto"), true),
            (Version::HTTP_2, Some("application/json"), false),
            (Version::HTTP_2, Some("application/grpc-web"), false),
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
            let (parts, ()) = request.body(()).unwrap().into_parts();
            assert_eq!(
                require_grpc(&parts).is_ok(),
                ok,
                "{version:?} {content_type:?}"
            );
        }
    }
}
