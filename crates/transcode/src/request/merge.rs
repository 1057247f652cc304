//! The bindings tree woven into the body's JSON (Envoy's request weaver): singular fields the
//! body sets keep the body's value (or, with collision checks, must agree), repeated fields get
//! the bindings' values after the body's.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::fields::is_well_known;
use crate::{JsonOptions, TranscodeError};

/// Weaves the bindings tree into the body's JSON (Envoy's request weaver).
pub(super) fn merge(
    message: &MessageDescriptor,
    body: &mut Map<String, Value>,
    bindings: Map<String, Value>,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    for (name, bound) in bindings {
        let Some(field) = message.get_field_by_name(&name) else {
            continue;
        };
        // The body may name the field by its JSON name or its proto name.
        let key = body
            .keys()
            .find(|key| *key == field.name() || *key == field.json_name())
            .cloned();
        let existing = key.as_ref().and_then(|key| body.get_mut(key));
        match existing {
            None => {
                body.insert(name, bound);
            }
            Some(existing) if existing.is_null() => *existing = bound,
            Some(existing) => {
                if field.is_list() {
                    // Repeated: the bindings' values follow the body's.
                    if let (Value::Array(items), Value::Array(more)) = (existing, bound) {
                        items.extend(more);
                    }
                } else {
                    match (field.kind(), existing, bound) {
                        (Kind::Message(nested), Value::Object(inner), Value::Object(more))
                            if !is_well_known(&nested) =>
                        {
                            merge(&nested, inner, more, options)?;
                        }
                        // Singular: the body's value wins (Envoy drops the binding), unless
                        // collisions are checked and the values differ.
                        (_, existing, bound) => {
                            collide(message, &field, existing, &bound, options)?
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

pub(super) fn collide(
    message: &MessageDescriptor,
    field: &FieldDescriptor,
    body: &Value,
    bound: &Value,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    if !options.rejects_collisions() {
        return Ok(());
    }
    let read = |value: &Value| {
        let single = Value::Object(Map::from_iter([(field.name().to_owned(), value.clone())]));
        DynamicMessage::deserialize(message.clone(), single)
            .map(|message| message.get_field(field).into_owned())
    };
    // A body value that does not read is refused with the whole body, below.
    if let (Ok(in_body), Ok(in_binding)) = (read(body), read(bound))
        && in_body != in_binding
    {
        return Err(TranscodeError::Collision {
            field: field.name().to_owned(),
            binding: text(bound),
            body: text(body),
        });
    }
    Ok(())
}

pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
