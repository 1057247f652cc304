//! What esprit does with the parts of a `google.api.Service` it does not read.
//!
//! The serde layer (`raw`) declares only the fields esprit reads; every other field is reported
//! by `serde_ignored` and classified here against [`SECTIONS`]:
//!
//! - **descriptive**: documentation, telemetry descriptions, type listings, provenance. They do
//!   not change who may call or how a call is treated; accepted silently.
//! - **enforced elsewhere**: read by another part of esprit (the per-method deadline of
//!   `backend.rules`); accepted silently. (`endpoints[].allow_cors` is read by `raw`.)
//! - **unenforced**: they would change who may call or how calls are treated (quotas, CORS,
//!   backend routing, …) and esprit does not implement them. Refused with their path, unless
//!   the caller allows unenforced sections, in which case they are returned so the caller can
//!   log each one. A section holding only default values (`quota: {}`) asks for
//!   nothing and is accepted silently.
//! - **unknown**: anything else, typically a typo (`requirement:` for `requirements:`) that
//!   would silently drop a rule. Always an error, with the closest known name when one is close.
//!
//! `control.environment` is accepted: it names Google's Service Control, whose job (API-key
//! checks) esprit does with its own key server (`--service-control-url`). Any other field of
//! `control` is unenforced.

use serde::de::{self, Visitor};
use serde_json::Value;

use crate::error::ConfigError;
use crate::raw;

/// One step of a field path as written in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    Descriptive,
    EnforcedElsewhere,
    Unenforced,
}

use Treatment::{Descriptive, EnforcedElsewhere, Unenforced};

/// Fields `raw` does not declare, by normalized path (snake_case names, `[]` for any index).
/// The longest pattern covering a path decides; a pattern covers the fields below it.
const SECTIONS: &[(&str, Treatment)] = &[
    // Descriptive: about the service, not about its calls.
    ("config_version", Descriptive),
    ("id", Descriptive),
    ("producer_project_id", Descriptive),
    ("documentation", Descriptive),
    ("logging", Descriptive),
    ("logs", Descriptive),
    ("monitoring", Descriptive),
    ("metrics", Descriptive),
    ("monitored_resources", Descriptive),
    ("billing", Descriptive),
    ("types", Descriptive),
    ("enums", Descriptive),
    ("system_types", Descriptive),
    ("custom_error", Descriptive),
    ("publishing", Descriptive),
    ("source_info", Descriptive),
    ("apis[].methods", Descriptive),
    ("apis[].options", Descriptive),
    ("apis[].version", Descriptive),
    ("apis[].source_context", Descriptive),
    ("apis[].syntax", Descriptive),
    ("apis[].edition", Descriptive),
    ("authentication.providers[].authorization_url", Descriptive),
    ("endpoints[].name", Descriptive),
    ("endpoints[].aliases", Descriptive),
    ("endpoints[].target", Descriptive),
    ("usage.producer_notification_channel", Descriptive),
    // esprit's key server replaces Service Control (see the module docs).
    ("control.environment", Descriptive),
    // Read by the per-method deadline support.
    ("backend.rules[].selector", EnforcedElsewhere),
    ("backend.rules[].deadline", EnforcedElsewhere),
    // Unenforced: they would change who may call or how calls are treated.
    ("quota", Unenforced),
    ("control", Unenforced),
    ("backend", Unenforced),
    ("context", Unenforced),
    ("experimental", Unenforced),
    ("apis[].mixins", Unenforced),
    ("authentication.rules[].oauth", Unenforced),
    ("usage.requirements", Unenforced),
    ("usage.rules[].skip_service_control", Unenforced),
];

/// The esprit extension listing a requirement's callers, read on
/// `authentication.rules[].requirements[]` only (`raw::Requirement`).
const ALLOWED_CALLERS_HOME: &str = "x_esprit_allowed_callers";
/// Spellings of it refused with a pointer to where it belongs, wherever they appear unread.
const ALLOWED_CALLERS_ALIASES: &[&str] = &["x_esprit_allowed_callers", "allowed_callers"];

/// What the unread fields of one config amount to.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Unknown fields, one error each.
    pub unknown: Vec<ConfigError>,
    /// Paths of unenforced sections that ask for something.
    pub unenforced: Vec<String>,
}

/// Converts a `serde_ignored` path into segments.
pub(crate) fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = path;
    loop {
        current = match current {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                parent
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                parent
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => parent,
        };
    }
    out.reverse();
    out
}

/// Classifies every ignored path; `tree` is the whole document as a generic value (used to
/// look inside sections serde skipped whole), `None` when it could not be built.
pub(crate) fn classify(ignored: &[Vec<Segment>], tree: Option<&Value>) -> Findings {
    let mut findings = Findings::default();
    for path in ignored {
        let value = tree.and_then(|tree| lookup(tree, path));
        let mut path = path.clone();
        visit(&mut path, value, &mut findings);
    }
    findings
}

fn visit(path: &mut Vec<Segment>, value: Option<&Value>, findings: &mut Findings) {
    let norm = normalized(path);
    let has_known_children = SECTIONS.iter().any(|(pattern, _)| is_below(pattern, &norm));
    if has_known_children {
        match value {
            Some(Value::Object(map)) => {
                for (key, child) in map {
                    path.push(Segment::Key(key.clone()));
                    visit(path, Some(child), findings);
                    path.pop();
                }
                return;
            }
            Some(Value::Array(items)) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(Segment::Index(index));
                    visit(path, Some(child), findings);
                    path.pop();
                }
                return;
            }
            _ => {}
        }
    }
    let treatment = SECTIONS
        .iter()
        .filter(|(pattern, _)| covers(pattern, &norm))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, treatment)| *treatment);
    let unenforced = match treatment {
        Some(Descriptive | EnforcedElsewhere) => return,
        Some(Unenforced) => true,
        // A known section not in the expected shape, or one that could not be looked into.
        None => has_known_children,
    };
    if !unenforced {
        // Even an empty unknown field is refused: it is the typo of a field that was meant.
        findings.unknown.push(unknown_field(path));
    } else if !value.is_some_and(is_default) {
        findings.unenforced.push(render(path, true));
    }
}

fn unknown_field(path: &[Segment]) -> ConfigError {
    let (parent, key) = match path.split_last() {
        Some((Segment::Key(key), parent)) => (parent, key.as_str()),
        _ => (path, ""),
    };
    if ALLOWED_CALLERS_ALIASES.contains(&snake_case(key).as_str()) {
        // The extension field (or its short spelling) somewhere it has no meaning: say where
        // it belongs rather than "unknown field".
        return ConfigError::InvalidValue {
            path: render(path, false),
            message: format!(
                "a list of callers is the esprit extension {ALLOWED_CALLERS_HOME}, accepted \
                 only on authentication.rules[].requirements[]"
            ),
        };
    }
    ConfigError::UnknownField {
        path: render(path, false),
        suggestion: suggest(&normalized(parent), key),
    }
}

/// The known name at `parent` closest to `key`, when it is close enough to be a typo.
fn suggest(parent: &str, key: &str) -> Option<String> {
    let key = snake_case(key);
    let read = read_fields(parent).iter().map(|name| snake_case(name));
    let unread = SECTIONS.iter().filter_map(|(pattern, _)| {
        let rest = if parent.is_empty() {
            *pattern
        } else {
            pattern.strip_prefix(parent)?.strip_prefix('.')?
        };
        (!rest.contains('.')).then(|| rest.trim_end_matches("[]").to_owned())
    });
    read.chain(unread)
        .map(|name| (strsim::damerau_levenshtein(&key, &name), name))
        .filter(|(distance, name)| *distance > 0 && *distance <= 2.min(name.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The field names (with their aliases) that `raw` declares for the object at `parent`.
fn read_fields(parent: &str) -> &'static [&'static str] {
    match parent {
        "" => fields_of::<raw::Service>(),
        "apis[]" => fields_of::<raw::Api>(),
        "authentication" => fields_of::<raw::Authentication>(),
        "authentication.providers[]" => fields_of::<raw::AuthProvider>(),
        "authentication.providers[].jwt_locations[]" => fields_of::<raw::JwtLocation>(),
        "authentication.rules[]" => fields_of::<raw::AuthRule>(),
        "authentication.rules[].requirements[]" => fields_of::<raw::Requirement>(),
        "usage" => fields_of::<raw::Usage>(),
        "usage.rules[]" => fields_of::<raw::UsageRule>(),
        "endpoints[]" => fields_of::<raw::Endpoint>(),
        "http" => fields_of::<raw::Http>(),
        "http.rules[]" | "http.rules[].additional_bindings[]" => fields_of::<raw::HttpRule>(),
        "http.rules[].custom" | "http.rules[].additional_bindings[].custom" => {
            fields_of::<raw::CustomHttpPattern>()
        }
        "system_parameters" => fields_of::<raw::SystemParameters>(),
        "system_parameters.rules[]" => fields_of::<raw::SystemParameterRule>(),
        "system_parameters.rules[].parameters[]" => fields_of::<raw::SystemParameter>(),
        _ => &[],
    }
}

/// The field list serde derives for a struct, read by asking it to deserialize from a probe.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    // The probe always ends in an error; only the field list it recorded matters.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

fn lookup<'a>(tree: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |value, segment| match segment {
        Segment::Key(key) => value.as_object()?.get(key),
        Segment::Index(index) => value.as_array()?.get(*index),
    })
}

/// A value that asks for nothing: null, false, 0, "", or containers of such values only.
fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.iter().all(is_default),
        Value::Object(map) => map.values().all(is_default),
    }
}

/// `authentication.rules[].requirements` from `authentication`, `rules`, 0, `requirements`.
fn normalized(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&snake_case(key));
            }
            Segment::Index(_) => out.push_str("[]"),
        }
    }
    out
}

/// The path for messages: snake_case names (the YAML vocabulary), real indices. With
/// `snake_last` false the last name is shown as written (an unknown field's own spelling).
fn render(path: &[Segment], snake_last: bool) -> String {
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if snake_last || i + 1 < path.len() {
                    out.push_str(&snake_case(key));
                } else {
                    out.push_str(key);
                }
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// `jwksUri` → `jwks_uri`; snake_case names are unchanged.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `pattern` is `path` or one of its ancestors.
fn covers(pattern: &str, path: &str) -> bool {
    path.strip_prefix(pattern)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// `pattern` is strictly below `path`.
fn is_below(pattern: &str, path: &str) -> bool {
    pattern != path && covers(path, pattern)
}

#[cfg(test)]
mod tests;
