//! `http_status` for every gRPC code, and the JSON error body with and without details.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use prost::Message;
use transcode::{JsonOptions, error_body, error_body_in, http_status};

/// google.rpc.Status, declared here with prost's derive: an encoder independent of the crate's.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

fn any(type_name: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value,
    }
}

fn body(bytes: Vec<u8>) -> String {
    let text = String::from_utf8(bytes).expect("UTF-8");
    serde_json::from_str::<serde_json::Value>(&text).expect("the body is JSON");
    text
}

#[test]
fn http_status_for_every_code() {
    let table = [
        (0, 200),  // OK
        (1, 499),  // CANCELLED
        (2, 500),  // UNKNOWN
        (3, 400),  // INVALID_ARGUMENT
        (4, 504),  // DEADLINE_EXCEEDED
        (5, 404),  // NOT_FOUND
        (6, 409),  // ALREADY_EXISTS
        (7, 403),  // PERMISSION_DENIED
        (8, 429),  // RESOURCE_EXHAUSTED
        (9, 400),  // FAILED_PRECONDITION
        (10, 409), // ABORTED
        (11, 400), // OUT_OF_RANGE
        (12, 501), // UNIMPLEMENTED
        (13, 500), // INTERNAL
        (14, 503), // UNAVAILABLE
        (15, 500), // DATA_LOSS
        (16, 401), // UNAUTHENTICATED
        (17, 500), // not a code
        (u32::MAX, 500),
    ];
    for (code, want) in table {
        assert_eq!(http_status(code), want, "grpc code {code}");
    }
}

#[test]
fn error_body_without_details() {
    assert_eq!(
        body(error_body(5, "Shelf 7 not found", None)),
        r#"{"code":5,"message":"Shelf 7 not found"}"#
    );
    // The message is JSON-escaped.
    assert_eq!(
        body(error_body(3, "bad \"x\"\n\\ é", None)),
        r#"{"code":3,"message":"bad \"x\"\n\\ é"}"#
    );
    assert_eq!(
        body(error_body(13, "", None)),
        r#"{"code":13,"message":""}"#
    );
}

#[test]
fn error_body_from_envoy_documentation_vector() {
    // Envoy's grpc_json_transcoder docs (convert_grpc_status): the trailer
    //   grpc-status-details-bin: CAUaMwoqdHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLlJlcXVlc3RJbmZvEgUKA3ItMQ
    // decodes to Status { code: 5, details: [RequestInfo { request_id: "r-1" }] } and becomes
    //   {"code":5,"details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1"}]}
    // (esprit always writes "message", empty here).
    let bin = b"CAUaMwoqdHlwZS5nb29nbGVhcGlzLmNvbS9nb29nbGUucnBjLlJlcXVlc3RJbmZvEgUKA3ItMQ";
    assert_eq!(
        body(error_body(
            5,
            "ignored: the status in the trailer wins",
            Some(bin)
        )),
        r#"{"code":5,"message":"","details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1"}]}"#
    );
}

#[test]
fn error_body_with_details() {
    let nested = common::nested();
    let mut packed = prost_reflect::DynamicMessage::new(nested);
    packed.set_field_by_name("name", prost_reflect::Value::String("in detail".into()));
    packed.set_field_by_name("count", prost_reflect::Value::I32(2));
    let status = Status {
        code: 3,
        message: "bad shelf".into(),
        details: vec![
            // google.rpc.BadRequest { field_violations: [{ field: "shelf", description: "d" }] }
            any("google.rpc.BadRequest", {
                let violation = [b"\x0a\x05shelf".as_slice(), b"\x12\x01d"].concat();
                let mut bytes = vec![0x0a, violation.len() as u8];
                bytes.extend(violation);
                bytes
            }),
            // google.rpc.RetryInfo { retry_delay: 1.5s }: a well-known type inside.
            any("google.rpc.RetryInfo", {
                let delay = prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }
                .encode_to_vec();
                let mut bytes = vec![0x0a, delay.len() as u8];
                bytes.extend(delay);
                bytes
            }),
            // A well-known type as the detail itself.
            any(
                "google.protobuf.Duration",
                prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }
                .encode_to_vec(),
            ),
            // A type of the API: rendered only when the API's pool is given.
            any("kitchen.v1.Nested", packed.encode_to_vec()),
        ],
    };
    let bin = STANDARD_NO_PAD.encode(status.encode_to_vec());

    let with_pool = body(error_body_in(
        Some(common::pool()),
        &JsonOptions::default(),
        13,
        "grpc-message is not used",
        Some(bin.as_bytes()),
    ));
    assert_eq!(
        with_pool,
        concat!(
            r#"{"code":3,"message":"bad shelf","details":["#,
            r#"{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"shelf","description":"d"}]},"#,
            r#"{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"},"#,
            r#"{"@type":"type.googleapis.com/google.protobuf.Duration","value":"2s"},"#,
            r#"{"@type":"type.googleapis.com/kitchen.v1.Nested","name":"in detail","count":2}]}"#
        )
    );

    // Without the API's pool its type is unknown: written with its bytes in base64.
    let without_pool = body(error_body(13, "", Some(bin.as_bytes())));
    let unknown = format!(
        r#"{{"@type":"type.googleapis.com/kitchen.v1.Nested","value":"{}"}}]}}"#,
        STANDARD.encode(packed.encode_to_vec())
    );
    assert!(without_pool.ends_with(&unknown), "{without_pool}");

    // Print options apply to the details.
    let preserve = body(error_body_in(
        None,
        &JsonOptions {
            preserve_proto_field_names: true,
            ..JsonOptions::default()
        },
        13,
        "",
        Some(bin.as_bytes()),
    ));
    assert!(preserve.contains(r#""field_violations":[{"#), "{preserve}");

    // Padded base64 decodes as well.
    let padded = STANDARD.encode(status.encode_to_vec());
    assert_eq!(
        body(error_body_in(
            Some(common::pool()),
            &JsonOptions::default(),
            13,
            "",
            Some(padded.as_bytes())
        )),
        with_pool
    );
}

#[test]
fn a_details_trailer_that_does_not_decode_is_ignored() {
    for bin in [&b"%%% not base64"[..], b"////", b""] {
        assert_eq!(
            body(error_body(14, "backend down", Some(bin))),
            r#"{"code":14,"message":"backend down"}"#,
            "{bin:?}"
        );
    }
}
