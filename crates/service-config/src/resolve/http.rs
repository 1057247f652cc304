//! `http`: each method's HTTP bindings, from its `google.api.http` option or the config's
//! `http.rules` (which replace the option, as in ESP; last match wins), checked against the
//! request and response messages, and the router built from them.

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage, Value,
};

use super::providers::is_http_token;
use super::rules::{RuleCheck, last_match};
use crate::error::ConfigError;
use crate::http::router::Router;
use crate::http::{HttpBinding, HttpBody, PathTemplate};
use crate::model::Method;
use crate::raw;
use crate::selector::RuleSelector;

/// A binding parsed from one rule (or nested binding), with the path errors about it carry.
struct ParsedBinding {
    /// `http.rules[0]`, `http.rules[0].additional_bindings[1]`, or for an option
    /// `<method> (google.api.http)`.
    base: String,
    /// The pattern field: `get`, …, `custom.path`.
    pattern: &'static str,
    binding: HttpBinding,
}

/// Sets `method.http` on every method and returns the router, reporting every problem.
pub(super) fn build_http(
    http: raw::Http,
    methods: &mut [Method],
    pool: Option<&DescriptorPool>,
    check: &mut RuleCheck<'_>,
) -> Router {
    let mut rules: Vec<(RuleSelector, Vec<ParsedBinding>)> = Vec::new();
    for (i, rule) in http.rules.iter().flatten().enumerate() {
        let base = format!("http.rules[{i}]");
        let selector = check.selector(&base, &rule.selector);
        let parsed = parse_rule(rule, &base, false, check.errors);
        if let Some(selector) = selector {
            rules.push((selector, parsed));
        }
    }
    let option = pool.and_then(|pool| pool.get_extension_by_name("google.api.http"));

    // Per method, the path of each binding's pattern field, for the conflict error.
    let mut pattern_paths: Vec<Vec<String>> = Vec::with_capacity(methods.len());
    for method in methods.iter_mut() {
        let from_option;
        let parsed = match last_match(&rules, &method.selector) {
            // ESP: a rule of the service config replaces the method's option.
            Some(parsed) => parsed,
            None => {
                from_option = option_bindings(method, option.as_ref(), check.errors);
                &from_option
            }
        };
        let input = method.descriptor.input();
        let output = method.descriptor.output();
        for parsed in parsed {
            check_fields(parsed, &input, &output, check.errors);
        }
        method.http = parsed.iter().map(|p| p.binding.clone()).collect();
        pattern_paths.push(
            parsed
                .iter()
                .map(|p| format!("{}.{}", p.base, p.pattern))
                .collect(),
        );
    }

    let mut router = Router::new(http.fully_decode_reserved_expansion.unwrap_or(false));
    for (m, method) in methods.iter().enumerate() {
        for (b, binding) in method.http.iter().enumerate() {
            if let Err((first_m, _)) = router.insert(&binding.method, &binding.template, (m, b)) {
                check.errors.push(ConfigError::HttpRouteConflict {
                    path: pattern_paths[m][b].clone(),
                    route: format!("{} {}", binding.method, binding.template),
                    first: methods[first_m].selector.to_string(),
                    second: method.selector.to_string(),
                });
            }
        }
    }
    router
}

/// The bindings of a method's `google.api.http` option, if it has one.
fn option_bindings(
    method: &Method,
    option: Option<&ExtensionDescriptor>,
    errors: &mut Vec<ConfigError>,
) -> Vec<ParsedBinding> {
    let options = method.descriptor.options();
    let Some(option) = option.filter(|option| options.has_extension(option)) else {
        return Vec::new();
    };
    match options.get_extension(option).as_ref() {
        Value::Message(rule) => parse_rule(
            &rule_from_option(rule),
            &format!("{} (google.api.http)", method.selector),
            false,
            errors,
        ),
        _ => Vec::new(),
    }
}

/// The syntax of one rule: exactly one pattern, a valid template, a valid custom kind; its
/// additional bindings follow it (one level only).
fn parse_rule(
    rule: &raw::HttpRule,
    base: &str,
    nested: bool,
    errors: &mut Vec<ConfigError>,
) -> Vec<ParsedBinding> {
    let mut out = Vec::new();
    let mut patterns: Vec<(&'static str, String, &str)> = Vec::new();
    for (field, method, text) in [
        ("get", "GET", &rule.get),
        ("put", "PUT", &rule.put),
        ("post", "POST", &rule.post),
        ("delete", "DELETE", &rule.delete),
        ("patch", "PATCH", &rule.patch),
    ] {
        if let Some(text) = text {
            patterns.push((field, method.to_owned(), text));
        }
    }
    if let Some(custom) = &rule.custom {
        match custom.kind.as_deref().map(str::trim) {
            None | Some("") => errors.push(ConfigError::MissingField {
                path: format!("{base}.custom.kind"),
            }),
            Some(kind) if !is_http_token(kind) => errors.push(ConfigError::InvalidValue {
                path: format!("{base}.custom.kind"),
                message: format!("{kind:?} is not an HTTP method name (or \"*\" for any)"),
            }),
            Some(kind) => patterns.push((
                "custom.path",
                kind.to_owned(),
                custom.path.as_deref().unwrap_or_default(),
            )),
        }
    }
    let primary = match patterns.as_slice() {
        [one] => Some(one),
        [] if rule.custom.is_some() => None, // the custom kind's error is already reported
        [] => {
            errors.push(ConfigError::InvalidValue {
                path: base.to_owned(),
                message: "set one of get, put, post, delete, patch or custom".to_owned(),
            });
            None
        }
        [first, second, ..] => {
            errors.push(ConfigError::InvalidValue {
                path: base.to_owned(),
                message: format!(
                    "set exactly one of get, put, post, delete, patch or custom, not both {} \
                     and {}",
                    first.0.trim_end_matches(".path"),
                    second.0.trim_end_matches(".path")
                ),
            });
            None
        }
    };
    if let Some((pattern, method, text)) = primary {
        match PathTemplate::parse(text) {
            Ok(template) => out.push(ParsedBinding {
                base: base.to_owned(),
                pattern,
                binding: HttpBinding {
                    method: method.clone(),
                    template,
                    body: match rule.body.as_deref().filter(|b| !b.is_empty()) {
                        None => HttpBody::None,
                        Some("*") => HttpBody::Whole,
                        Some(field) => HttpBody::Field(field.to_owned()),
                    },
                    response_body: rule.response_body.clone().filter(|r| !r.is_empty()),
                },
            }),
            Err(error) => errors.push(ConfigError::InvalidTemplate {
                path: format!("{base}.{pattern}"),
                template: (*text).to_owned(),
                error,
            }),
        }
    }
    let additional = rule.additional_bindings.as_deref().unwrap_or_default();
    if nested {
        if !additional.is_empty() {
            errors.push(ConfigError::InvalidValue {
                path: format!("{base}.additional_bindings"),
                message: "additional bindings cannot have additional bindings of their own"
                    .to_owned(),
            });
        }
        if rule.selector.as_deref().is_some_and(|s| !s.is_empty()) {
            errors.push(ConfigError::InvalidValue {
                path: format!("{base}.selector"),
                message: "an additional binding applies to its rule's selector; remove this one"
                    .to_owned(),
            });
        }
        return out;
    }
    for (j, binding) in additional.iter().enumerate() {
        out.extend(parse_rule(
            binding,
            &format!("{base}.additional_bindings[{j}]"),
            true,
            errors,
        ));
    }
    out
}

/// A `google.api.HttpRule` option value in the config's form, so both are checked alike.
fn rule_from_option(message: &DynamicMessage) -> raw::HttpRule {
    let text = |message: &DynamicMessage, name: &str| {
        let field = message.descriptor().get_field_by_name(name)?;
        message
            .has_field(&field)
            .then(|| message.get_field(&field).as_str().map(str::to_owned))
            .flatten()
    };
    let custom = message
        .descriptor()
        .get_field_by_name("custom")
        .filter(|field| message.has_field(field))
        .and_then(|field| match message.get_field(&field).as_ref() {
            Value::Message(custom) => Some(raw::CustomHttpPattern {
                kind: text(custom, "kind"),
                path: text(custom, "path"),
            }),
            _ => None,
        });
    let additional_bindings = message
        .descriptor()
        .get_field_by_name("additional_bindings")
        .filter(|field| message.has_field(field))
        .and_then(|field| match message.get_field(&field).as_ref() {
            Value::List(items) => Some(
                items
                    .iter()
                    .filter_map(|item| item.as_message().map(rule_from_option))
                    .collect(),
            ),
            _ => None,
        });
    raw::HttpRule {
        selector: text(message, "selector"),
        get: text(message, "get"),
        put: text(message, "put"),
        post: text(message, "post"),
        delete: text(message, "delete"),
        patch: text(message, "patch"),
        custom,
        body: text(message, "body"),
        response_body: text(message, "response_body"),
        additional_bindings,
    }
}

/// The fields a binding names exist in the method's messages and can hold what is bound.
fn check_fields(
    parsed: &ParsedBinding,
    input: &MessageDescriptor,
    output: &MessageDescriptor,
    errors: &mut Vec<ConfigError>,
) {
    let binding = &parsed.binding;
    let base = &parsed.base;
    for variable in binding.template.variables() {
        let problem = match resolve_path(input, variable) {
            Err(problem) => Some(problem),
            Ok(field) if field.is_list() || field.is_map() => Some(format!(
                "field {variable:?} of {} is repeated; a path variable binds one value",
                input.full_name()
            )),
            Ok(field) => match field.kind() {
                Kind::Message(message) => Some(format!(
                    "field {variable:?} of {} is a message ({}); bind one of its scalar fields, \
                     e.g. {{{variable}.<field>}}",
                    input.full_name(),
                    message.full_name()
                )),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::InvalidValue {
                path: format!("{base}.{}", parsed.pattern),
                message: format!("path variable {{{variable}}}: {problem}"),
            });
        }
    }
    if let HttpBody::Field(body) = &binding.body {
        let problem = match resolve_path(input, body) {
            Err(problem) => Some(problem),
            Ok(_) if binding.template.variables().any(|v| v == body) => Some(format!(
                "field {body:?} is already bound by the path variable {{{body}}}"
            )),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::InvalidValue {
                path: format!("{base}.body"),
                message: problem,
            });
        }
    }
    if let Some(response) = &binding.response_body
        && let Err(problem) = resolve_path(output, response)
    {
        errors.push(ConfigError::InvalidValue {
            path: format!("{base}.response_body"),
            message: problem,
        });
    }
}

/// The field a dotted path names, every step before the last a singular message field.
fn resolve_path(message: &MessageDescriptor, path: &str) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    let mut steps = path.split('.').peekable();
    while let Some(name) = steps.next() {
        let Some(field) = current.get_field_by_name(name) else {
            // As for unknown config fields: close enough to be a typo.
            let suggestion = current
                .fields()
                .map(|f| {
                    (
                        strsim::damerau_levenshtein(name, f.name()),
                        f.name().to_owned(),
                    )
                })
                .filter(|(distance, known)| *distance <= 2.min(known.len() / 3).max(1))
                .min_by_key(|(distance, _)| *distance)
                .map(|(_, name)| format!(" (did you mean {name:?}?)"))
                .unwrap_or_default();
            return Err(format!(
                "{} has no field {name:?}{suggestion}",
                current.full_name()
            ));
        };
        if steps.peek().is_none() {
            return Ok(field);
        }
        current = match field.kind() {
            Kind::Message(next) if !field.is_list() && !field.is_map() => next,
            _ => {
                return Err(format!(
                    "field {name:?} of {} is not a singular message, so {path:?} names nothing",
                    current.full_name()
                ));
            }
        };
    }
    Err(format!("{path:?} is not a field path"))
}
