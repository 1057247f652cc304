//! HTTP request → protobuf request message.
//!
//! As grpc-httpjson-transcoding's request translator: the JSON body is placed where the rule's
//! `body` says, then the bindings (path variables first, then query parameters in order) are
//! woven in. A binding of a singular field that the body also sets is dropped (the body's value
//! wins) or, with collision checks on, compared; repeated fields get the bindings' values after
//! the body's; between bindings of one singular field the last wins. The merged JSON is read by
//! prost-reflect into the message and encoded.

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};
use serde_json::{Map, Value};

use crate::{BodyRule, JsonOptions, TranscodeError};

/// The most segments a field path (`a.b.c`) of a path variable, query parameter or rule may
/// have: protobuf's default recursion limit, so a query string cannot make a message nested
/// deeper than any protobuf parser reads.
pub const MAX_FIELD_PATH_DEPTH: usize = 100;

/// Builds the encoded request message of a transcoded HTTP call.
///
/// `variables` are the path template's bindings (dotted field path, value already
/// percent-decoded); `query` is the raw query string (after `?`, still percent-encoded); `body`
/// the HTTP body, JSON or empty. Errors are the caller's (INVALID_ARGUMENT) except
/// [`TranscodeError::InvalidRule`].
pub fn request_message(
    input: &MessageDescriptor,
    variables: &[(String, String)],
    query: Option<&str>,
    body_rule: BodyRule<'_>,
    body: &[u8],
    options: &JsonOptions,
) -> Result<Bytes, TranscodeError> {
    let body = parse_body(body)?;
    let mut root = place_body(input, body_rule, body)?;
    // Enum names in the body: unknown names are refused (protobuf's converter, which Envoy runs,
    // ignores unknown fields but not unknown enum values) and, with the option, matched
    // case-insensitively. prost-reflect cannot tell unknown fields from unknown enum values.
    check_message(input, &mut root, options)?;

    let mut bindings = Map::new();
    for (path, value) in variables {
        let fields = resolve_path(input, path)?;
        bind(&mut bindings, input, &fields, path, value, options)?;
    }
    for (name, value) in query.map(query_parameters).into_iter().flatten() {
        if is_ignored(&options.ignored_query_parameters, name) {
            continue;
        }
        let name = decode_name(name)?;
        if is_ignored(&options.ignored_query_parameters, &name) {
            continue;
        }
        let fields = match resolve_path(input, &name) {
            Ok(fields) => fields,
            // Envoy: a binding whose field path does not resolve is skipped with
            // ignore_unknown_query_parameters, else the call fails.
            Err(_) if options.ignore_unknown_query_parameters => continue,
            Err(error) => return Err(error),
        };
        if fields.is_empty() {
            // `.=x`: Envoy splits with SkipEmpty and binds nothing.
            continue;
        }
        let value = decode_value(&name, value, options)?;
        bind(&mut bindings, input, &fields, &name, &value, options)?;
    }

    if !bindings.is_empty() {
        match &mut root {
            Value::Object(body) => merge(input, body, bindings, options)?,
            _ => {
                return Err(TranscodeError::InvalidBody {
                    detail: format!(
                        "expected a JSON object for the message {}",
                        input.full_name()
                    ),
                });
            }
        }
    }

    let message = read_message(input, &root).map_err(|error| TranscodeError::InvalidBody {
        detail: match locate_error(input, &root, LOCATE_DEPTH) {
            Some((path, detail)) => format!("{path}: {detail}"),
            None => error.to_string(),
        },
    })?;
    Ok(Bytes::from(message.encode_to_vec()))
}

fn read_message(
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
const LOCATE_DEPTH: usize = 8;

/// The field (`nested.count`, `rNested[1].name`) whose JSON prost-reflect refused, and why:
/// prost-reflect's errors do not say where. Reads each field of the object alone and descends
/// into the first that fails.
fn locate_error(
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
fn parse_body(body: &[u8]) -> Result<Option<Value>, TranscodeError> {
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
fn place_body(
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

fn is_singular_message(field: &FieldDescriptor) -> bool {
    !field.is_list() && !field.is_map() && matches!(field.kind(), Kind::Message(_))
}

/// Messages whose JSON form is not an object of their fields; prost-reflect reads them whole.
fn is_well_known(message: &MessageDescriptor) -> bool {
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
fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// Resolves `a.b.c` (empty segments skipped, as Envoy's `StrSplit(…, SkipEmpty)`) to fields;
/// every field but the last must be a singular message that is not a well-known type.
fn resolve_path(
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

/// `name=value` pairs of a query string, raw. As Envoy: a parameter without `=`, or with an
/// empty name, binds nothing.
fn query_parameters(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        (!name.is_empty()).then_some((name, value))
    })
}

fn is_ignored(ignored: &[String], name: &str) -> bool {
    ignored.iter().any(|ignored| ignored == name)
}

fn decode_name(name: &str) -> Result<String, TranscodeError> {
    percent_decode_str(name)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| TranscodeError::InvalidUtf8 {
            name: String::from_utf8_lossy(&percent_decode_str(name).collect::<Vec<u8>>())
                .into_owned(),
        })
}

/// A query value percent-decoded (invalid escapes stay as they are, as in Envoy), `+` meaning a
/// space unless disabled (ESPv2 sets Envoy's `query_param_unescape_plus`).
fn decode_value(name: &str, value: &str, options: &JsonOptions) -> Result<String, TranscodeError> {
    let plus_decoded;
    let value = if options.query_parameters_disable_unescape_plus || !value.contains('+') {
        value
    } else {
        plus_decoded = value.replace('+', " ");
        &plus_decoded
    };
    percent_decode_str(value)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| TranscodeError::InvalidUtf8 {
            name: name.to_owned(),
        })
}

/// Adds one binding to the bindings tree (keyed by proto names): singular leaves are replaced
/// (the last binding wins), repeated leaves appended. The value is converted to its JSON form
/// and checked against the field's type here, so the error names the parameter.
fn bind(
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
fn binding_json(
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
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The enum value's name for `raw`: exact, or upper-cased with case-insensitive parsing.
fn enum_name(
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

/// Reads one binding's value as its field, alone, to refuse a bad value with its name.
fn check_binding(
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

/// Walks the body's JSON along the message: enum names are checked (and normalized with
/// case-insensitive parsing). Depth is that of the parsed JSON, at most serde_json's 128.
fn check_message(
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

fn check_value(
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

/// Weaves the bindings tree into the body's JSON (Envoy's request weaver).
fn merge(
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

fn collide(
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

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
