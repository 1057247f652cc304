//! HTTP request → protobuf request message.
//!
//! As grpc-httpjson-transcoding's request translator: the JSON body is placed where the rule's
//! `body` says, then the bindings (path variables first, then query parameters in order) are
//! woven in. A binding of a singular field that the body also sets is dropped (the body's value
//! wins) or, with collision checks on, compared; repeated fields get the bindings' values after
//! the body's; between bindings of one singular field the last wins. The merged JSON is read by
//! prost-reflect into the message and encoded.
//!
//! The parts, in the order a request meets them: [`body`] parses the JSON body, places it where
//! the rule says and reads the result into the message; [`enums`] checks the body's enum names;
//! [`query`] splits and decodes the query string; [`fields`] resolves field paths in the
//! message's descriptor; [`bind`] turns path variables and query parameters into JSON bound to
//! their fields; [`merge`] weaves those bindings into the body.

mod bind;
mod body;
mod enums;
mod fields;
mod merge;
mod query;

use bytes::Bytes;
use prost::Message;
use prost_reflect::MessageDescriptor;
use serde_json::{Map, Value};

use crate::{BodyRule, JsonOptions, TranscodeError};
use bind::bind;
use body::{LOCATE_DEPTH, locate_error, parse_body, place_body, read_message};
use enums::check_message;
use fields::resolve_path;
use merge::merge;
use query::{decode_name, decode_value, is_ignored, query_parameters};

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
