//! The JSON body: parsed, placed where the rule's `body` puts it, read into the message, and,
//! when prost-reflect refuses it, the field at fault located.

use prost_reflect::{DeserializeOptions, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::fields::{find_field, is_singular_message, is_well_known, resolve_path};
use crate::{BodyRule, TranscodeError};

pub(super) fn read_message(
    message: &MessageDescriptor,
    json: &Value,
) -> Result<DynamicMessage, serde_json::Error> {
    DynamicMessage::deserialize_with_options(
        message.clone(),
        json,
        // Envoy's transcoder ignores unknown fields in the body (ignore_unknown_fields = true).
        &DeserializeOptions::new().deny_unknown_fields(false),
    )
}

/// How many message levels deep a body error is located (each level reads its part again, so
/// the cost of an error stays a small multiple of the body's size).
pub(super) const LOCATE_DEPTH: usize = 8;

/// The field (`nested.count`, `rNested[1].name`) whose JSON prost-reflect refused, and why:
/// prost-reflect's errors do not say where. Reads each field of the object alone and descends
/// into the first that fails.
pub(super) fn locate_error(
    message: &MessageDescriptor,
    json: &Value,
    depth: usize,
) -> Option<(String, String)> {
    let Value::Object(fields) = json else {
        return None;
    };
    if depth == 0 || is_well_known(message) {
        return None;
    }
    for (key, value) in fields {
        let Some(field) = find_field(message, key) else {
            continue;
        };
        let single = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
        let Err(error) = read_message(message, &single) else {
            continue;
        };
        let inner = match (field.kind(), value) {
            (Kind::Message(nested), Value::Object(_)) if !field.is_map() && !field.is_list() => {
                locate_error(&nested, value, depth - 1)
                    .map(|(path, detail)| (format!("{key}.{path}"), detail))
            }
            (Kind::Message(nested), Value::Array(items)) if field.is_list() => {
                items.iter().enumerate().find_map(|(i, item)| {
                    locate_error(&nested, item, depth - 1)
                        .map(|(path, detail)| (format!("{key}[{i}].{path}"), detail))
                })
            }
            _ => None,
        };
        return Some(inner.unwrap_or_else(|| (key.clone(), error.to_string())));
    }
    None
}

/// The body as JSON; an empty (or all-whitespace) body is absent, as Envoy reads it as `{}`.
pub(super) fn parse_body(body: &[u8]) -> Result<Option<Value>, TranscodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // serde_json refuses nesting deeper than 128 levels, so nothing below recurses further.
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|error| TranscodeError::InvalidJson {
            detail: error.to_string(),
        })
}

/// The message's JSON with the body where the rule puts it.
pub(super) fn place_body(
    input: &MessageDescriptor,
    rule: BodyRule<'_>,
    body: Option<Value>,
) -> Result<Value, TranscodeError> {
    let path = match rule {
        BodyRule::None | BodyRule::Whole => {
            return Ok(match body {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(body) => body,
            });
        }
        BodyRule::Field(path) => path,
    };
    let fields = resolve_path(input, path).map_err(|error| TranscodeError::InvalidRule {
        detail: format!("body \"{path}\": {error}"),
    })?;
    let Some((leaf, parents)) = fields.split_last() else {
        return Err(TranscodeError::InvalidRule {
            detail: format!("body \"{path}\" names no field"),
        });
    };
    let body = match body {
        Some(body) => body,
        // Envoy translates an empty body as `{}` under the body field: a message field is set
        // (empty); any other field stays unset.
        None if is_singular_message(leaf) => Value::Object(Map::new()),
        None => return Ok(Value::Object(Map::new())),
    };
    let mut value = body;
    value = Value::Object(Map::from_iter([(leaf.name().to_owned(), value)]));
    for field in parents.iter().rev() {
        value = Value::Object(Map::from_iter([(field.name().to_owned(), value)]));
    }
    Ok(value)
}
