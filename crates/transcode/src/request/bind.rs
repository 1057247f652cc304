//! Path variables and query parameters as JSON bound to their fields: converted to the JSON
//! form their field's type expects, checked alone (so an error names the parameter), and added
//! to the bindings tree.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::enums::enum_name;
use super::fields::is_well_known;
use crate::{JsonOptions, TranscodeError};

/// Adds one binding to the bindings tree (keyed by proto names): singular leaves are replaced
/// (the last binding wins), repeated leaves appended. The value is converted to its JSON form
/// and checked against the field's type here, so the error names the parameter.
pub(super) fn bind(
    tree: &mut Map<String, Value>,
    input: &MessageDescriptor,
    fields: &[FieldDescriptor],
    path: &str,
    raw: &str,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    let Some((leaf, parents)) = fields.split_last() else {
        return Ok(());
    };
    let value = binding_json(leaf, path, raw, options)?;
    let parent = parents
        .last()
        .and_then(|field| field.kind().as_message().cloned())
        .unwrap_or_else(|| input.clone());
    check_binding(&parent, leaf, path, raw, &value)?;

    let mut node = tree;
    for field in parents {
        let slot = node
            .entry(field.name().to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else {
            // Made an object just above.
            return Ok(());
        };
        node = map;
    }
    if leaf.is_list() {
        match node
            .entry(leaf.name().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            slot => *slot = Value::Array(vec![value]),
        }
    } else {
        node.insert(leaf.name().to_owned(), value);
    }
    Ok(())
}

/// A path variable or query value as the JSON its field expects.
pub(super) fn binding_json(
    field: &FieldDescriptor,
    path: &str,
    raw: &str,
    options: &JsonOptions,
) -> Result<Value, TranscodeError> {
    if field.is_map() {
        return Err(TranscodeError::NotBindable {
            path: path.to_owned(),
        });
    }
    let invalid = |detail: &str| TranscodeError::InvalidValue {
        path: path.to_owned(),
        value: raw.to_owned(),
        detail: detail.to_owned(),
    };
    Ok(match field.kind() {
        Kind::Bool => Value::Bool(parse_bool(raw).ok_or_else(|| invalid("expected a boolean"))?),
        Kind::Enum(enumeration) => match raw.parse::<i32>() {
            Ok(number) => Value::from(number),
            Err(_) => Value::String(enum_name(&enumeration, field, raw, options)?),
        },
        Kind::Message(message) if is_well_known(&message) => match message.name() {
            "BoolValue" => {
                Value::Bool(parse_bool(raw).ok_or_else(|| invalid("expected a boolean"))?)
            }
            "Timestamp" | "Duration" | "FieldMask" | "Value" | "StringValue" | "BytesValue"
            | "DoubleValue" | "FloatValue" | "Int64Value" | "UInt64Value" | "Int32Value"
            | "UInt32Value" => Value::String(raw.to_owned()),
            _ => {
                return Err(TranscodeError::NotBindable {
                    path: path.to_owned(),
                });
            }
        },
        Kind::Message(_) => {
            return Err(TranscodeError::NotBindable {
                path: path.to_owned(),
            });
        }
        // Numbers as strings: the proto3 JSON mapping accepts them for every numeric type
        // (including "NaN", "Infinity"); strings as they are; bytes as base64 (standard or
        // URL-safe, padded or not).
        _ => Value::String(raw.to_owned()),
    })
}

/// protobuf's `safe_strtob`, which Envoy's binding conversion uses.
pub(super) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Reads one binding's value as its field, alone, to refuse a bad value with its name.
pub(super) fn check_binding(
    parent: &MessageDescriptor,
    leaf: &FieldDescriptor,
    path: &str,
    raw: &str,
    value: &Value,
) -> Result<(), TranscodeError> {
    let value = if leaf.is_list() {
        Value::Array(vec![value.clone()])
    } else {
        value.clone()
    };
    let single = Value::Object(Map::from_iter([(leaf.name().to_owned(), value)]));
    DynamicMessage::deserialize(parent.clone(), single)
        .map(drop)
        .map_err(|error| TranscodeError::InvalidValue {
            path: path.to_owned(),
            value: raw.to_owned(),
            detail: error.to_string(),
        })
}
