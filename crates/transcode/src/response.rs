//! Protobuf response message → JSON, and the JSON array of a server stream.

use prost_reflect::{
    DynamicMessage, Kind, MessageDescriptor, ReflectMessage, SerializeOptions, Value,
};

use crate::{JsonOptions, TranscodeError};

/// The JSON answer for one message from the backend.
///
/// With `response_body` (a dotted field path of the output message) the answer is that field's
/// value alone: an object for a message, an array for a repeated field, or a bare string, number
/// or boolean for a scalar (valid JSON text). A field the message does not set is answered with
/// its default value (`{}`, `[]`, `""`, `0`, `false`), never with an empty body.
pub fn response_json(
    output: &MessageDescriptor,
    response_body: Option<&str>,
    message: &[u8],
    options: &JsonOptions,
) -> Result<Vec<u8>, TranscodeError> {
    let message = DynamicMessage::decode(output.clone(), message).map_err(|error| {
        TranscodeError::InvalidResponse {
            detail: format!(
                "the backend's message is not a {}: {error}",
                output.full_name()
            ),
        }
    })?;
    let serialize = options.serialize_options();
    match response_body {
        None => to_json(&message, &serialize),
        Some(path) => field_json(message, path, options, &serialize),
    }
}

fn to_json(
    message: &DynamicMessage,
    options: &SerializeOptions,
) -> Result<Vec<u8>, TranscodeError> {
    let mut serializer = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut serializer, options)
        .map_err(|error| TranscodeError::InvalidResponse {
            detail: error.to_string(),
        })?;
    Ok(serializer.into_inner())
}

fn field_json(
    message: DynamicMessage,
    path: &str,
    options: &JsonOptions,
    serialize: &SerializeOptions,
) -> Result<Vec<u8>, TranscodeError> {
    let invalid_rule = |detail: String| TranscodeError::InvalidRule {
        detail: format!("response_body \"{path}\": {detail}"),
    };
    let names: Vec<&str> = path.split('.').filter(|name| !name.is_empty()).collect();
    let Some((leaf_name, parent_names)) = names.split_last() else {
        return Err(invalid_rule("names no field".to_owned()));
    };
    let mut current = message;
    for name in parent_names {
        let field = find(&current, name).ok_or_else(|| invalid_rule(format!("no field {name}")))?;
        let next = match (field.kind(), field.is_list() || field.is_map()) {
            (Kind::Message(_), false) => match current.get_field(&field).as_message() {
                Some(next) => next.clone(),
                None => return Err(invalid_rule(format!("{name} is not a message"))),
            },
            _ => return Err(invalid_rule(format!("{name} is not a message"))),
        };
        current = next;
    }
    let leaf =
        find(&current, leaf_name).ok_or_else(|| invalid_rule(format!("no field {leaf_name}")))?;
    let value = current.get_field(&leaf).into_owned();
    if let (Value::Message(inner), false) = (&value, leaf.is_list() || leaf.is_map()) {
        return to_json(inner, serialize);
    }
    // Anything else is written as the only field of a message of the parent's type, with
    // defaults printed so an unset field still has its JSON value, then taken out.
    let mut holder = DynamicMessage::new(current.descriptor());
    holder.set_field(&leaf, value);
    let json = holder
        .serialize_with_options(
            serde_json::value::Serializer,
            &serialize.clone().skip_default_fields(false),
        )
        .map_err(|error| TranscodeError::InvalidResponse {
            detail: error.to_string(),
        })?;
    let key = if options.preserve_proto_field_names {
        leaf.name()
    } else {
        leaf.json_name()
    };
    let value = match json {
        serde_json::Value::Object(mut fields) => fields.remove(key),
        _ => None,
    }
    .unwrap_or(serde_json::Value::Null);
    serde_json::to_vec(&value).map_err(|error| TranscodeError::InvalidResponse {
        detail: error.to_string(),
    })
}

fn find(message: &DynamicMessage, name: &str) -> Option<prost_reflect::FieldDescriptor> {
    let descriptor = message.descriptor();
    descriptor
        .get_field_by_name(name)
        .or_else(|| descriptor.get_field_by_json_name(name))
}

/// Frames the messages of a server-streaming answer as one JSON array written as they arrive
/// (Envoy's transcoder: `[`, the messages separated by `,`, `]`; an answer with no message is
/// `[]`).
#[derive(Clone, Debug, Default)]
pub struct JsonArrayWriter {
    written: u64,
}

impl JsonArrayWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes that open the array, sent before the first message.
    pub const fn open() -> &'static [u8] {
        b"["
    }

    /// One element: the message's JSON, preceded by `,` unless it is the first.
    pub fn item(&mut self, json: Vec<u8>) -> Vec<u8> {
        self.written += 1;
        if self.written == 1 {
            return json;
        }
        let mut item = Vec::with_capacity(json.len() + 1);
        item.push(b',');
        item.extend_from_slice(&json);
        item
    }

    /// The bytes that close the array, sent when the stream ends.
    pub const fn close() -> &'static [u8] {
        b"]"
    }

    /// How many elements were written.
    pub fn items(&self) -> u64 {
        self.written
    }
}
