//! The query string: split into parameters and percent-decoded, as Envoy reads it.

use percent_encoding::percent_decode_str;

use crate::{JsonOptions, TranscodeError};

/// `name=value` pairs of a query string, raw. As Envoy: a parameter without `=`, or with an
/// empty name, binds nothing.
pub(super) fn query_parameters(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        (!name.is_empty()).then_some((name, value))
    })
}

pub(super) fn is_ignored(ignored: &[String], name: &str) -> bool {
    ignored.iter().any(|ignored| ignored == name)
}

pub(super) fn decode_name(name: &str) -> Result<String, TranscodeError> {
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
pub(super) fn decode_value(
    name: &str,
    value: &str,
    options: &JsonOptions,
) -> Result<String, TranscodeError> {
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
