//! Field paths (`a.b.c`) resolved in the message's descriptor, as Envoy's type helper does.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::MAX_FIELD_PATH_DEPTH;
use crate::TranscodeError;

pub(super) fn is_singular_message(field: &FieldDescriptor) -> bool {
    !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_))
}

/// Messages whose JSON form is not an object of their fields; prost-reflect reads them whole.
pub(super) fn is_well_known(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
        && matches!(
            message.name(),
            "Any"
                | "Timestamp"
                | "Duration"
                | "FieldMask"
                | "Struct"
                | "Value"
                | "ListValue"
                | "Empty"
                | "DoubleValue"
                | "FloatValue"
                | "Int64Value"
                | "UInt64Value"
                | "Int32Value"
                | "UInt32Value"
                | "BoolValue"
                | "StringValue"
                | "BytesValue"
        )
}

/// A field by its proto name or its JSON name, as Envoy's type helper and prost-reflect accept.
pub(super) fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// Resolves `a.b.c` (empty segments skipped, as Envoy's `StrSplit(…, SkipEmpty)`) to fields;
/// every field but the last must be a singular message that is not a well-known type.
pub(super) fn resolve_path(
    input: &MessageDescriptor,
    path: &str,
) -> Result<Vec<FieldDescriptor>, TranscodeError> {
    let mut fields = Vec::new();
    let mut current = input.clone();
    let names: Vec<&str> = path.split('.').filter(|name| !name.is_empty()).collect();
    if names.len() > MAX_FIELD_PATH_DEPTH {
        return Err(TranscodeError::PathTooDeep {
            path: path.to_owned(),
        });
    }
    for (i, name) in names.iter().enumerate() {
        let field = find_field(&current, name).ok_or_else(|| TranscodeError::UnknownField {
            field: (*name).to_owned(),
            message_type: current.full_name().to_owned(),
        })?;
        if i + 1 < names.len() {
            match field.kind() {
                Kind::Message(message)
                    if !field.is_list() && !field.is_map() && !is_well_known(&message) =>
                {
                    current = message;
                }
                _ => {
                    return Err(TranscodeError::NotAMessage {
                        field: field.name().to_owned(),
                    });
                }
            }
        }
        fields.push(field);
    }
    Ok(fields)
}
