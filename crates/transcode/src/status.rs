//! gRPC status → HTTP status and the JSON error body.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::JsonOptions;

/// The HTTP status of a gRPC status code: Envoy's `Grpc::Utility::grpcToHttpStatus`, which
/// ESPv2 answers with (google.rpc.Code's documented HTTP mapping, CANCELLED as 499). Codes
/// outside 0..=16 are 500, as in Envoy.
pub fn http_status(grpc_code: u32) -> u16 {
    match grpc_code {
        0 => 200,  // OK
        1 => 499,  // CANCELLED (client closed request)
        2 => 500,  // UNKNOWN
        3 => 400,  // INVALID_ARGUMENT
        4 => 504,  // DEADLINE_EXCEEDED
        5 => 404,  // NOT_FOUND
        6 => 409,  // ALREADY_EXISTS
        7 => 403,  // PERMISSION_DENIED
        8 => 429,  // RESOURCE_EXHAUSTED
        9 => 400,  // FAILED_PRECONDITION
        10 => 409, // ABORTED
        11 => 400, // OUT_OF_RANGE
        12 => 501, // UNIMPLEMENTED
        13 => 500, // INTERNAL
        14 => 503, // UNAVAILABLE
        15 => 500, // DATA_LOSS
        16 => 401, // UNAUTHENTICATED
        _ => 500,
    }
}

/// The JSON body of an error answer: `{"code":…,"message":…}` plus `"details":[…]` when the
/// status has details, resolving detail types with the google.rpc error details only (see
/// [`error_body_in`]).
pub fn error_body(grpc_code: u32, message: &str, status_details_bin: Option<&[u8]>) -> Vec<u8> {
    error_body_in(
        None,
        &JsonOptions::default(),
        grpc_code,
        message,
        status_details_bin,
    )
}

/// The JSON error body, as Envoy's transcoder writes it (`convert_grpc_status`, which ESPv2
/// enables): the `google.rpc.Status` of `grpc-status-details-bin` when it is present and decodes
/// (then its code and message are the body's, as in Envoy), else one made of `grpc_code` and
/// `message` (the `grpc-message` text, already percent-decoded).
///
/// `status_details_bin` is the trailer's value as received: base64, padded or not. Each detail
/// (a `google.protobuf.Any`) is written as its message's JSON with `"@type"` (well-known types as
/// `{"@type":…,"value":…}`) when its type is in `pool` (the API's descriptor) or is one of
/// google/rpc/error_details.proto's. A detail of another type cannot be rendered (Envoy then
/// gives up converting the whole status): it is written `{"@type":…,"value":"<base64 of the
/// bytes>"}`, so the answer stays JSON and no detail is lost. `options` are the print options of
/// the answers (field names, enums as numbers, defaults).
pub fn error_body_in(
    pool: Option<&DescriptorPool>,
    options: &JsonOptions,
    grpc_code: u32,
    message: &str,
    status_details_bin: Option<&[u8]>,
) -> Vec<u8> {
    let decoded = status_details_bin.and_then(decode_status);
    let (code, message, details) = match &decoded {
        Some(status) => (
            i64::from(status.code),
            status.message.as_str(),
            status.details.as_slice(),
        ),
        None => (i64::from(grpc_code), message, &[][..]),
    };
    let rendered: Vec<Vec<u8>> = details
        .iter()
        .map(|(type_url, value)| render_any(pool, options, type_url, value))
        .collect();

    // Written by hand so the fields come in the status's order (a serde_json map would sort
    // them: code, details, message).
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    out.extend_from_slice(&json_bytes(&serde_json::Value::from(message)));
    if !rendered.is_empty() {
        out.extend_from_slice(b",\"details\":");
        out.push(b'[');
        out.extend_from_slice(&rendered.join(&b',')[..]);
        out.push(b']');
    }
    out.push(b'}');
    out
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    // Writing a `serde_json::Value` to a Vec cannot fail (string keys, finite numbers).
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

struct DecodedStatus {
    code: i32,
    message: String,
    /// (type URL, encoded message) of each detail.
    details: Vec<(String, Vec<u8>)>,
}

/// google.rpc.Status and the standard error details, compiled by build.rs.
fn google_rpc() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc.bin"))[..])
            .ok()
    })
    .as_ref()
}

fn status_descriptor() -> Option<MessageDescriptor> {
    google_rpc()?.get_message_by_name("google.rpc.Status")
}

/// gRPC's `-bin` values are base64, padded or not.
const BIN_HEADER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_status(bin: &[u8]) -> Option<DecodedStatus> {
    let bytes = BIN_HEADER.decode(bin.trim_ascii()).ok()?;
    // An empty value would decode as an OK status: treat it as absent.
    if bytes.is_empty() {
        return None;
    }
    let status = DynamicMessage::decode(status_descriptor()?, bytes.as_slice()).ok()?;
    let code = match status.get_field_by_name("code")?.as_ref() {
        Value::I32(code) => *code,
        _ => 0,
    };
    let message = status
        .get_field_by_name("message")?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let details = status
        .get_field_by_name("details")?
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|any| {
            let any = any.as_message()?;
            let type_url = any.get_field_by_name("type_url")?.as_str()?.to_owned();
            let value = any.get_field_by_name("value")?.as_bytes()?.to_vec();
            Some((type_url, value))
        })
        .collect();
    Some(DecodedStatus {
        code,
        message,
        details,
    })
}

/// One detail as JSON text, its fields in the message's order (a `serde_json::Value` would sort
/// them).
fn render_any(
    pool: Option<&DescriptorPool>,
    options: &JsonOptions,
    type_url: &str,
    value: &[u8],
) -> Vec<u8> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let descriptor = pool
        .and_then(|pool| pool.get_message_by_name(name))
        .or_else(|| google_rpc()?.get_message_by_name(name))
        .or_else(|| DescriptorPool::global().get_message_by_name(name));
    let rendered = descriptor.and_then(|descriptor| {
        let message = DynamicMessage::decode(descriptor, value).ok()?;
        let mut serializer = serde_json::Serializer::new(Vec::new());
        message
            .serialize_with_options(&mut serializer, &options.serialize_options())
            .ok()?;
        Some(serializer.into_inner())
    });
    let mut out = b"{\"@type\":".to_vec();
    out.extend_from_slice(&json_bytes(&serde_json::Value::from(type_url)));
    match rendered {
        // A message's fields follow "@type" in the same object.
        Some(json) if !name.starts_with("google.protobuf.") && json.starts_with(b"{") => {
            if json.len() > 2 {
                out.push(b',');
            }
            out.extend_from_slice(&json[1..]);
            return out;
        }
        // A well-known type's JSON form is not an object of its fields: it goes in "value".
        Some(json) => {
            out.extend_from_slice(b",\"value\":");
            out.extend_from_slice(&json);
        }
        None => {
            out.extend_from_slice(b",\"value\":");
            out.extend_from_slice(&json_bytes(&serde_json::Value::from(
                base64::engine::general_purpose::STANDARD.encode(value),
            )));
        }
    }
    out.push(b'}');
    out
}
