//! HTTP/JSON transcoding, the message half: what Envoy's `grpc_json_transcoder` filter (built on
//! grpc-ecosystem/grpc-httpjson-transcoding, which ESPv2 runs) does to messages.
//!
//! - [`request_message`]: the HTTP request (path variables, query string, JSON body, the rule's
//!   `body`) → the encoded protobuf request.
//! - [`response_json`]: one protobuf message from the backend (and the rule's `response_body`) →
//!   its JSON; [`JsonArrayWriter`] frames a server stream as a JSON array.
//! - [`http_status`] and [`error_body`]: a gRPC status → the HTTP status and the
//!   `{"code":…,"message":…,"details":[…]}` body.
//!
//! The proto3 JSON mapping itself (every scalar, enum, map, oneof and well-known type) is
//! `prost-reflect`'s; this crate adds only what transcoding puts around it. Pure code: no I/O,
//! no clock, no async. It deliberately does not match routes or parse path templates (that is
//! `service-config`'s router, which hands over the method, the rule and the path variables), nor
//! read bodies or headers (the proxy does, bounding the body's size first).
//!
//! Bounds: nothing a client sends makes this crate recurse or allocate beyond the size of what it
//! sent. JSON nesting is limited by serde_json's recursion limit (128 levels); field paths of
//! path variables and query parameters to [`MAX_FIELD_PATH_DEPTH`] segments.
//!
//! The behaviours, with the choices made where Envoy's are ambiguous or impossible to copy, are
//! listed in the crate's README.md.

mod error;
mod request;
mod response;
mod status;

pub use error::TranscodeError;
pub use request::{MAX_FIELD_PATH_DEPTH, request_message};
pub use response::{JsonArrayWriter, response_json};
pub use status::{error_body, error_body_in, http_status};

/// ESPv2's `--transcoding_*` flags, as far as they concern messages. `Default` is ESPv2's default
/// for every field except `strict_request_validation` (see there).
#[derive(Clone, Debug, Default)]
pub struct JsonOptions {
    /// `--transcoding_always_print_primitive_fields`: fields without presence (scalars, enums,
    /// strings, bytes, repeated, maps) are printed even when they hold their default value.
    /// Unset messages, oneof members and `optional` scalars stay omitted, as in Envoy.
    pub always_print_primitive_fields: bool,
    /// `--transcoding_always_print_enums_as_ints`: enums are printed as numbers, not names.
    pub always_print_enums_as_ints: bool,
    /// `--transcoding_preserve_proto_field_names`: `field_name` rather than `fieldName` in
    /// answers. Requests accept both names either way.
    pub preserve_proto_field_names: bool,
    /// `--transcoding_ignore_unknown_query_parameters`: a query parameter naming no field is
    /// dropped instead of failing the call with 400.
    pub ignore_unknown_query_parameters: bool,
    /// `--transcoding_ignore_query_parameters` (ESPv2 adds `api_key`, `key` and the JWT query
    /// locations): query parameters with these exact names never map to fields.
    pub ignored_query_parameters: Vec<String>,
    /// `--transcoding_query_parameters_disable_unescape_plus`: a `+` in a query value stays `+`
    /// instead of meaning a space.
    pub query_parameters_disable_unescape_plus: bool,
    /// `--transcoding_case_insensitive_enum_parsing`: an enum name that matches no value is
    /// looked up again upper-cased (protobuf's converter does the same), in the body and in
    /// path variables and query parameters.
    pub case_insensitive_enum_parsing: bool,
    /// `--transcoding_strict_request_validation`. In ESPv2 it turns on Envoy's
    /// `reject_unknown_method` and `reject_unknown_query_parameters`, and gates
    /// `reject_binding_body_field_collisions` (`--transcoding_reject_collision`). Here: unknown
    /// methods are the router's business, and an unknown query parameter is always refused with
    /// 400 unless ignored by the two options above (without it Envoy would forward the HTTP call
    /// untranscoded, which the backend can only fail); what this flag still decides is whether
    /// `reject_binding_body_collisions` applies.
    pub strict_request_validation: bool,
    /// `--transcoding_reject_collision` (only with `strict_request_validation`, as in ESPv2): a
    /// path variable or query parameter that sets a singular field the body also sets, to a
    /// different value, fails the call with 400. Otherwise the body's value wins, as in Envoy.
    pub reject_binding_body_collisions: bool,
}

impl JsonOptions {
    fn rejects_collisions(&self) -> bool {
        self.strict_request_validation && self.reject_binding_body_collisions
    }

    fn serialize_options(&self) -> prost_reflect::SerializeOptions {
        prost_reflect::SerializeOptions::new()
            .skip_default_fields(!self.always_print_primitive_fields)
            .use_enum_numbers(self.always_print_enums_as_ints)
            .use_proto_field_name(self.preserve_proto_field_names)
    }
}

/// The HTTP rule's `body`: which part of the request message the HTTP body fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRule<'a> {
    /// `body` absent. Like Envoy, a JSON body sent anyway still fills the whole message (an empty
    /// body is `{}`).
    None,
    /// `body: "*"`: the body is the whole message; path variables and query parameters fill
    /// the rest (Envoy reads query parameters with `*` too).
    Whole,
    /// `body: "a.b"`: the body is the value of that field (an object, a list, a scalar).
    Field(&'a str),
}
