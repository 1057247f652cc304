//! Enum names, in the body and in bindings: unknown names refused and, with
//! case-insensitive parsing, normalized to the value's name.

use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value;

use super::fields::{find_field, is_well_known};
use crate::{JsonOptions, TranscodeError};

/// The enum value's name for `raw`: exact, or upper-cased with case-insensitive parsing.
pub(super) fn enum_name(
    enumeration: &EnumDescriptor,
    field: &FieldDescriptor,
    raw: &str,
    options: &JsonOptions,
) -> Result<String, TranscodeError> {
    if enumeration.get_value_by_name(raw).is_some() {
        return Ok(raw.to_owned());
    }
    if options.case_insensitive_enum_parsing {
        let upper = raw.to_ascii_uppercase();
        if enumeration.get_value_by_name(&upper).is_some() {
            return Ok(upper);
        }
    }
    Err(TranscodeError::InvalidEnum {
        field: field.full_name().to_owned(),
        value: raw.to_owned(),
        enum_type: enumeration.full_name().to_owned(),
    })
}

/// Walks the body's JSON along the message: enum names are checked (and normalized with
/// case-insensitive parsing). Depth is that of the parsed JSON, at most serde_json's 128.
pub(super) fn check_message(
    message: &MessageDescriptor,
    value: &mut Value,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    if is_well_known(message) {
        return Ok(());
    }
    // Anything but an object is prost-reflect's to refuse.
    let Value::Object(map) = value else {
        return Ok(());
    };
    for (key, value) in map.iter_mut() {
        let Some(field) = find_field(message, key) else {
            continue;
        };
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let value_field = entry.map_entry_value_field();
            if let Value::Object(entries) = value {
                for value in entries.values_mut() {
                    check_value(&value_field, value, options)?;
                }
            }
        } else if field.is_list() {
            if let Value::Array(items) = value {
                for item in items {
                    check_value(&field, item, options)?;
                }
            }
        } else {
            check_value(&field, value, options)?;
        }
    }
    Ok(())
}

pub(super) fn check_value(
    field: &FieldDescriptor,
    value: &mut Value,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    match field.kind() {
        Kind::Enum(enumeration) => {
            if let Value::String(name) = value
                && enumeration.full_name() != "google.protobuf.NullValue"
            {
                let normalized = enum_name(&enumeration, field, name, options)?;
                *name = normalized;
            }
            Ok(())
        }
        Kind::Message(message) => check_message(&message, value, options),
        _ => Ok(()),
    }
}
