//! The one error type of the crate.

/// Why a message could not be transcoded.
///
/// The `Display` of each variant is the `message` an HTTP caller reads in the error body (the
/// proxy answers request errors with 400 and `{"code":3,"message":…}`), so the wording is a
/// contract, documented in the crate's README; where Envoy's transcoder has a message for the same
/// failure, ours is worded like it. Values a caller sent are quoted back to that caller only.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    /// The body is not JSON (the detail carries serde_json's line and column), or is nested deeper
    /// than serde_json's recursion limit (128).
    #[error("Invalid JSON body: {detail}")]
    InvalidJson { detail: String },
    /// The body is JSON but not the request message's JSON mapping (a wrong type, an invalid
    /// timestamp, two fields of one oneof, …); the detail is prost-reflect's, after the path of
    /// the field it is about (`nested.child.count: …`, `rNested[1].tags: …`) when found.
    #[error("Invalid request body: {detail}")]
    InvalidBody { detail: String },
    /// A path variable or query parameter names a field the message does not have (Envoy's
    /// wording). Query parameters are exempt with `ignore_unknown_query_parameters` or when listed
    /// in `ignored_query_parameters`.
    #[error("Could not find field \"{field}\" in the type \"{message_type}\".")]
    UnknownField { field: String, message_type: String },
    /// A field path goes through a field that is not a (non-repeated, non-well-known) message.
    #[error(
        "Encountered a non-leaf field \"{field}\" that is not a message while parsing a field path"
    )]
    NotAMessage { field: String },
    /// A field path is longer than [`crate::MAX_FIELD_PATH_DEPTH`].
    #[error("The field path \"{path}\" is nested too deeply")]
    PathTooDeep { path: String },
    /// A path variable or query parameter names a field that cannot take a single text value: a
    /// map, or a message other than the well-known types with a string form.
    #[error("The field \"{path}\" cannot be set from a path variable or query parameter")]
    NotBindable { path: String },
    /// A path variable or query parameter value does not parse as its field's type.
    #[error("Invalid value \"{value}\" for field \"{path}\": {detail}")]
    InvalidValue {
        path: String,
        value: String,
        detail: String,
    },
    /// An enum value (body, path variable or query parameter) names no value of the enum.
    #[error("Invalid value \"{value}\" for enum field \"{field}\" of type \"{enum_type}\"")]
    InvalidEnum {
        field: String,
        value: String,
        enum_type: String,
    },
    /// A query parameter's name or value is not UTF-8 once percent-decoded.
    #[error("Query parameter \"{name}\" is not valid UTF-8 after percent-decoding")]
    InvalidUtf8 { name: String },
    /// With `strict_request_validation` and `reject_binding_body_collisions`: a path variable or
    /// query parameter sets a field the body also sets, to another value (Envoy's wording).
    #[error(
        "The binding value {binding} of the field {field} is conflicting with the value {body} in the body."
    )]
    Collision {
        field: String,
        binding: String,
        body: String,
    },
    /// The HTTP rule itself does not fit the message (a `body` or `response_body` naming no field):
    /// a configuration error, answered as INTERNAL.
    #[error("Invalid HTTP rule: {detail}")]
    InvalidRule { detail: String },
    /// The backend's message does not decode as the method's output type, or its JSON form cannot
    /// be written (e.g. a timestamp out of range): answered as INTERNAL.
    #[error("Failed to transcode the response: {detail}")]
    InvalidResponse { detail: String },
}

impl TranscodeError {
    /// The gRPC code of the failure (google.rpc.Code): INVALID_ARGUMENT (3) for what the caller
    /// sent, INTERNAL (13) for the rule or the backend's answer. `crate::http_status` maps it.
    pub fn grpc_code(&self) -> u32 {
        match self {
            TranscodeError::InvalidJson { .. }
            | TranscodeError::InvalidBody { .. }
            | TranscodeError::UnknownField { .. }
            | TranscodeError::NotAMessage { .. }
            | TranscodeError::PathTooDeep { .. }
            | TranscodeError::NotBindable { .. }
            | TranscodeError::InvalidValue { .. }
            | TranscodeError::InvalidEnum { .. }
            | TranscodeError::InvalidUtf8 { .. }
            | TranscodeError::Collision { .. } => 3,
            TranscodeError::InvalidRule { .. } | TranscodeError::InvalidResponse { .. } => 13,
        }
    }
}
