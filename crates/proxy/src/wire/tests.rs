//! One table over every rejection and every stream ending: code, HTTP status, message and the
//! headers of both answers (gRPC caller, HTTP caller).

#![allow(clippy::unwrap_used)]

use super::*;

/// Forces this table to name every variant: adding a rejection without a row fails to compile
/// here (no `_` arm), and a row left out fails the count below.
fn variant(rejection: &Rejection) -> usize {
    match rejection {
        Rejection::Auth(_) => 0,
        Rejection::UndefinedMethod => 1,
        Rejection::NotGrpc => 2,
        Rejection::BackendUnavailable(_) => 3,
        Rejection::DeadlineExceeded => 4,
        Rejection::ApiKeyMissing => 5,
        Rejection::ApiKeyInvalid => 6,
        Rejection::ApiKeyCheckUnavailable => 7,
        Rejection::ApiKeyCheckOverloaded => 8,
        Rejection::Internal(_) => 9,
        Rejection::StreamIdleTimeout => 10,
        Rejection::GrpcWebBadText => 11,
        Rejection::CorsOriginNotAllowed => 12,
        Rejection::CorsPreflightIncomplete => 13,
        Rejection::Transcode(_) => 14,
        Rejection::RequestBodyTooLarge => 15,
        Rejection::RequestBodyIncomplete => 16,
        Rejection::StreamingOverHttp => 17,
    }
}
const VARIANTS: usize = 18;

struct Row {
    rejection: Rejection,
    code: Code,
    http: u16,
    message: &'static str,
    /// The HTTP status a gRPC caller sees (200 but for an undefined method).
    grpc_http: u16,
    /// Whether a gRPC caller gets a gRPC answer (trailers-only) at all.
    grpc_answer: bool,
    www_authenticate: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    let row = |rejection, code, http, message, grpc_http, grpc_answer, www| Row {
        rejection,
        code,
        http,
        message,
        grpc_http,
        grpc_answer,
        www_authenticate: www,
    };
    vec![
        row(
            Rejection::Auth(authn::AuthError::Missing),
            Code::Unauthenticated,
            401,
            "Jwt is missing",
            200,
            true,
            Some("Bearer"),
        ),
        row(
            Rejection::Auth(authn::AuthError::AudienceNotAllowed {
                provider: service_config::ProviderId::new("p"),
            }),
            Code::PermissionDenied,
            403,
            "Audiences in Jwt are not allowed",
            200,
            true,
            Some("Bearer, error=\"invalid_token\""),
        ),
        // esprit extension `x_esprit_allowed_callers`: a valid token whose caller is not listed.
        row(
            Rejection::Auth(authn::AuthError::CallerNotAllowed {
                provider: service_config::ProviderId::new("p"),
            }),
            Code::PermissionDenied,
            403,
            "Caller in Jwt is not allowed",
            200,
            true,
            Some("Bearer, error=\"insufficient_scope\""),
        ),
        row(
            Rejection::Auth(authn::AuthError::CallerUnidentified {
                provider: service_config::ProviderId::new("p"),
            }),
            Code::PermissionDenied,
            403,
            "Jwt has no verified email to identify the caller",
            200,
            true,
            Some("Bearer, error=\"insufficient_scope\""),
        ),
        row(
            Rejection::UndefinedMethod,
            Code::Unimplemented,
            404,
            "The current request is not defined by this API.",
            404,
            true,
            None,
        ),
        row(
            Rejection::NotGrpc,
            Code::InvalidArgument,
            415,
            "This method is served over gRPC only: call it over HTTP/2 with content-type application/grpc.",
            415,
            false,
            None,
        ),
        row(
            Rejection::BackendUnavailable("connection failure"),
            Code::Unavailable,
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            200,
            true,
            None,
        ),
        row(
            Rejection::DeadlineExceeded,
            Code::DeadlineExceeded,
            504,
            "Deadline Exceeded",
            200,
            true,
            None,
        ),
        row(
            Rejection::StreamIdleTimeout,
            Code::DeadlineExceeded,
            408,
            "stream timeout",
            200,
            true,
            None,
        ),
        row(
            Rejection::ApiKeyMissing,
            Code::Unauthenticated,
            401,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            200,
            true,
            None,
        ),
        row(
            Rejection::ApiKeyInvalid,
            Code::InvalidArgument,
            400,
            "API key not valid. Please pass a valid API key.",
            200,
            true,
            None,
        ),
        row(
            Rejection::ApiKeyCheckUnavailable,
            Code::Unavailable,
            503,
            "API key could not be checked: the key service is unavailable.",
            200,
            true,
            None,
        ),
        row(
            Rejection::ApiKeyCheckOverloaded,
            Code::Unavailable,
            503,
            "API key could not be checked: too many checks are in progress.",
            200,
            true,
            None,
        ),
        row(
            Rejection::Internal("x"),
            Code::Internal,
            500,
            "internal error: x",
            200,
            true,
            None,
        ),
        // Envoy's grpc_web filter text.
        row(
            Rejection::GrpcWebBadText,
            Code::InvalidArgument,
            400,
            "Bad gRPC-web request, invalid base64 data.",
            200,
            true,
            None,
        ),
        // CORS preflights are never gRPC calls: plain HTTP answers, without CORS headers.
        row(
            Rejection::CorsOriginNotAllowed,
            Code::PermissionDenied,
            403,
            "The CORS preflight request's origin is not allowed.",
            403,
            false,
            None,
        ),
        // ESPv2's direct response text.
        row(
            Rejection::CorsPreflightIncomplete,
            Code::InvalidArgument,
            400,
            "The CORS preflight request is missing one (or more) of the following required headers: Origin, Access-Control-Request-Method",
            400,
            false,
            None,
        ),
        // HTTP/JSON calls only (their answers are never gRPC); the code is the transcoder's.
        row(
            Rejection::Transcode(transcode::TranscodeError::UnknownField {
                field: "nope".into(),
                message_type: "pkg.Request".into(),
            }),
            Code::InvalidArgument,
            400,
            "Could not find field \"nope\" in the type \"pkg.Request\".",
            200,
            true,
            None,
        ),
        row(
            Rejection::RequestBodyTooLarge,
            Code::ResourceExhausted,
            413,
            "The request body is over the 4 MiB limit of HTTP/JSON calls.",
            200,
            true,
            None,
        ),
        row(
            Rejection::RequestBodyIncomplete,
            Code::InvalidArgument,
            400,
            "The request body ended before it was complete.",
            200,
            true,
            None,
        ),
        row(
            Rejection::StreamingOverHttp,
            Code::Unimplemented,
            501,
            "This method streams its requests, which HTTP/JSON cannot carry: call it over gRPC or gRPC-Web.",
            200,
            true,
            None,
        ),
    ]
}

#[test]
fn every_rejection_on_the_wire() {
    let rows = rows();
    let mut seen = [false; VARIANTS];
    for row in &rows {
        let r = &row.rejection;
        seen[variant(r)] = true;
        assert_eq!(r.code(), row.code, "{r:?}");
        assert_eq!(r.http_status().as_u16(), row.http, "{r:?}");
        assert_eq!(r.to_string(), row.message, "{r:?}");

        // A gRPC caller.
        let grpc = r.bare_response(true);
        assert_eq!(grpc.status().as_u16(), row.grpc_http, "{r:?}");
        let h = grpc.headers();
        assert_eq!(
            h.get("www-authenticate").map(|v| v.to_str().unwrap()),
            row.www_authenticate,
            "{r:?}"
        );
        if row.grpc_answer {
            assert_eq!(h["content-type"], "application/grpc", "{r:?}");
            assert_eq!(
                h["grpc-status"],
                (row.code as i32).to_string().as_str(),
                "{r:?}"
            );
            let status = tonic::Status::from_header_map(h).unwrap();
            assert_eq!(status.message(), row.message, "{r:?}");
            assert!(grpc.body().is_none(), "{r:?}");
        } else {
            assert_eq!(h["content-type"], "application/json", "{r:?}");
            assert!(h.get("grpc-status").is_none(), "{r:?}");
        }

        // An HTTP caller: the status and a JSON body.
        let plain = r.bare_response(false);
        assert_eq!(plain.status().as_u16(), row.http, "{r:?}");
        assert_eq!(plain.headers()["content-type"], "application/json", "{r:?}");
        assert!(plain.headers().get("grpc-status").is_none(), "{r:?}");
        assert_eq!(
            plain
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            row.www_authenticate,
            "{r:?}"
        );
        let body: serde_json::Value =
            serde_json::from_slice(plain.body().as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": row.http, "message": row.message}),
            "{r:?}"
        );
    }
    assert!(seen.iter().all(|s| *s), "a variant without a row: {seen:?}");
}

#[test]
fn every_stream_ending_on_the_wire() {
    fn variant(end: StreamEnd) -> usize {
        match end {
            StreamEnd::DeadlineExceeded => 0,
            StreamEnd::BackendReset => 1,
            StreamEnd::IdleTimeout => 2,
        }
    }
    let table = [
        (
            StreamEnd::DeadlineExceeded,
            Code::DeadlineExceeded,
            "Deadline Exceeded",
        ),
        (
            StreamEnd::BackendReset,
            Code::Unavailable,
            "upstream disconnect/reset after headers",
        ),
        (
            StreamEnd::IdleTimeout,
            Code::DeadlineExceeded,
            "stream timeout",
        ),
    ];
    let mut seen = [false; 3];
    for (end, code, message) in table {
        seen[variant(end)] = true;
        let status = end.status();
        assert_eq!(status.code(), code, "{end:?}");
        assert_eq!(status.message(), message, "{end:?}");
        let mut trailers = http::HeaderMap::new();
        status.add_header(&mut trailers).unwrap();
        assert_eq!(trailers["grpc-status"], (code as i32).to_string().as_str());
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn code_names_are_the_spec_names() {
    for (code, name) in [
        (Code::Ok, "OK"),
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
        (Code::Unauthenticated, "UNAUTHENTICATED"),
        (Code::PermissionDenied, "PERMISSION_DENIED"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::DataLoss, "DATA_LOSS"),
    ] {
        assert_eq!(code_name(code), name);
    }
}

/// The Bookstore client derives names from tonic's variant names instead of keeping a copy of
/// the table: both agree on every one of the 17 codes.
#[test]
fn the_bookstore_client_prints_the_same_names() {
    let codes: Vec<Code> = (0..=16).map(Code::from_i32).collect();
    assert_eq!(Code::from_i32(16), Code::Unauthenticated, "the last code");
    for code in codes {
        assert_eq!(bookstore::code_name(code), code_name(code), "{code:?}");
    }
}

/// A gRPC-Web caller (Envoy's `grpc_web` filter over a local reply): HTTP 200, the gRPC-Web
/// content type, the code and message in the headers, no body; a CORS or protocol refusal
/// stays plain HTTP.
#[tokio::test]
async fn every_rejection_to_a_grpc_web_caller() {
    use http_body_util::BodyExt as _;
    let limiter = crate::access_log::RejectedLines::new(Default::default());
    for row in rows() {
        let r = row.rejection;
        let log = CallLog::new(
            "127.0.0.1:1".parse().unwrap(),
            std::time::Instant::now(),
            &limiter,
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/grpc-web"),
        );
        let web = crate::grpc_web::detect(&headers).unwrap();
        let response = web.respond(r.into_response(true, log));
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        if row.grpc_answer {
            assert_eq!(parts.status, 200, "{}", row.message);
            assert_eq!(parts.headers["content-type"], "application/grpc-web+proto");
            assert_eq!(
                parts.headers["grpc-status"],
                (row.code as i32).to_string().as_str(),
                "{}",
                row.message
            );
            assert!(body.is_empty(), "{}", row.message);
        } else {
            // Not gRPC at all: the HTTP status becomes a gRPC-Web status, the JSON is dropped.
            assert_eq!(parts.status, 200, "{}", row.message);
            assert!(parts.headers.contains_key("grpc-status"), "{}", row.message);
            assert!(body.is_empty(), "{}", row.message);
        }
    }
}
