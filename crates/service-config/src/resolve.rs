//! Conversion of the serde layer into the model: validation, ESP defaults, rule resolution.
//!
//! Every check pushes onto one list instead of returning early, so a user sees all problems
//! of a config at once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::descriptor::Descriptor;
use crate::error::{ConfigError, ConfigErrors};
use crate::model::{
    Api, ApiKeyLocation, ApiKeyRequirement, Audience, AuthProvider, ConfigId, ExpClaim, Issuer,
    JwksUri, JwtLocation, Method, MethodAuth, OnMissing, ProviderId, Requirement, ServiceConfig,
};
use crate::raw;
use crate::selector::{RuleSelector, Selector};
use crate::uri::check_url;

/// What the caller knows about the descriptor.
pub(crate) enum DescriptorInput {
    Given(Descriptor),
    /// Loading it failed; the error is already in the list.
    Failed(ConfigError),
    Absent,
}

pub(crate) fn build(
    text: &str,
    service: raw::Service,
    descriptor: DescriptorInput,
) -> Result<ServiceConfig, ConfigErrors> {
    let mut errors = Vec::new();
    // Without a descriptor no selector can match; reporting each one would bury the real error.
    let descriptor = match descriptor {
        DescriptorInput::Given(descriptor) => Some(descriptor),
        DescriptorInput::Failed(error) => {
            errors.push(error);
            None
        }
        DescriptorInput::Absent => {
            errors.push(ConfigError::NoDescriptor {
                path: "descriptor".to_owned(),
            });
            None
        }
    };

    if let Some(kind) = present(&service.kind)
        && kind != "google.api.Service"
    {
        errors.push(ConfigError::InvalidValue {
            path: "type".to_owned(),
            message: format!("expected \"google.api.Service\", got {kind:?}"),
        });
    }
    let name = match present(&service.name) {
        Some(name) => name.to_owned(),
        None => {
            errors.push(ConfigError::MissingField {
                path: "name".to_owned(),
            });
            String::new()
        }
    };

    let (apis, mut methods, all_apis_found) = build_apis(
        service.apis.unwrap_or_default(),
        descriptor.as_ref(),
        &mut errors,
    );
    // With an API missing, "matches no method" would mostly repeat that error.
    let check_matches = descriptor.is_some() && all_apis_found;
    let selectors: Vec<Selector> = methods.iter().map(|m| m.selector.clone()).collect();
    let mut rules = RuleCheck {
        selectors: &selectors,
        check_matches,
        errors: &mut errors,
    };

    let authentication = service.authentication.unwrap_or_default();
    let providers = build_providers(authentication.providers.unwrap_or_default(), rules.errors);
    let auth_rules = build_auth_rules(
        authentication.rules.unwrap_or_default(),
        &providers,
        &name,
        &mut rules,
    );
    let usage_rules = build_usage_rules(
        service.usage.unwrap_or_default().rules.unwrap_or_default(),
        &mut rules,
    );
    let key_rules = build_system_parameter_rules(
        service
            .system_parameters
            .unwrap_or_default()
            .rules
            .unwrap_or_default(),
        &mut rules,
    );
    let backend_rules = build_backend_rules(
        service
            .backend
            .unwrap_or_default()
            .rules
            .unwrap_or_default(),
        &mut rules,
    );

    // All service configuration rules follow "last one wins" (google/api/*.proto).
    for method in &mut methods {
        method.backend_deadline = last_match(&backend_rules, &method.selector)
            .copied()
            .flatten();
        method.auth = last_match(&auth_rules, &method.selector).cloned().flatten();
        method.api_key = last_match(&usage_rules, &method.selector)
            .copied()
            .unwrap_or(ApiKeyRequirement::Required);
        // ESP_REFERENCE: a matching `api_key` system parameter replaces the default locations.
        method.api_key_locations = last_match(&key_rules, &method.selector)
            .cloned()
            .flatten()
            .unwrap_or_else(ApiKeyLocation::defaults);
    }

    let Some(descriptor) = descriptor.filter(|_| errors.is_empty()) else {
        return Err(ConfigErrors::new(errors));
    };
    let by_path = methods
        .iter()
        .enumerate()
        .map(|(i, m)| (m.grpc_path.clone(), i))
        .collect();
    let by_selector = methods
        .iter()
        .enumerate()
        .map(|(i, m)| (m.selector.as_str().to_owned(), i))
        .collect();
    Ok(ServiceConfig {
        id: config_id(text, descriptor.bytes()),
        name,
        title: present(&service.title).map(str::to_owned),
        apis,
        methods,
        providers,
        descriptor,
        by_path,
        by_selector,
    })
}

/// `sha256(len(text) ‖ text ‖ len(descriptor) ‖ descriptor)`, first 16 hex digits.
fn config_id(text: &str, descriptor: &[u8]) -> ConfigId {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&(text.len() as u64).to_be_bytes());
    ctx.update(text.as_bytes());
    ctx.update(&(descriptor.len() as u64).to_be_bytes());
    ctx.update(descriptor);
    let digest = ctx.finish();
    let hex: String = digest
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    ConfigId::new(hex)
}

/// A proto3 string field counts as set when non-blank.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// google.api audiences fields hold one comma-separated string.
fn split_audiences(value: &Option<String>) -> Vec<Audience> {
    value
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(Audience::new)
        .collect()
}

fn build_apis(
    apis: Vec<raw::Api>,
    descriptor: Option<&Descriptor>,
    errors: &mut Vec<ConfigError>,
) -> (Vec<Api>, Vec<Method>, bool) {
    if apis.is_empty() {
        errors.push(ConfigError::MissingField {
            path: "apis".to_owned(),
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut methods = Vec::new();
    let mut all_found = true;
    for (i, api) in apis.iter().enumerate() {
        let path = format!("apis[{i}].name");
        let Some(name) = present(&api.name) else {
            errors.push(ConfigError::MissingField { path });
            continue;
        };
        if !seen.insert(name) {
            errors.push(ConfigError::DuplicateApi {
                path,
                name: name.to_owned(),
            });
            continue;
        }
        out.push(Api {
            name: name.to_owned(),
        });
        let Some(descriptor) = descriptor else {
            continue;
        };
        let Some(service) = descriptor.pool().get_service_by_name(name) else {
            errors.push(ConfigError::UnknownApi {
                path,
                name: name.to_owned(),
            });
            all_found = false;
            continue;
        };
        for method in service.methods() {
            methods.push(Method {
                selector: Selector::new(method.full_name()),
                grpc_path: format!("/{}/{}", service.full_name(), method.name()),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
                auth: None,
                api_key: ApiKeyRequirement::Required,
                api_key_locations: ApiKeyLocation::defaults(),
                backend_deadline: None,
                descriptor: method,
            });
        }
    }
    (out, methods, all_found)
}

fn build_providers(
    providers: Vec<raw::AuthProvider>,
    errors: &mut Vec<ConfigError>,
) -> Vec<AuthProvider> {
    let mut first_path: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        let base = format!("authentication.providers[{i}]");
        let mut ok = true;
        let id = present(&provider.id);
        match id {
            None => {
                errors.push(ConfigError::MissingField {
                    path: format!("{base}.id"),
                });
                ok = false;
            }
            Some(id) => {
                let path = format!("{base}.id");
                if let Some(first) = first_path.get(id) {
                    errors.push(ConfigError::DuplicateProvider {
                        path,
                        id: id.to_owned(),
                        first: first.clone(),
                    });
                    ok = false;
                } else {
                    first_path.insert(id.to_owned(), path);
                }
            }
        }
        let issuer = present(&provider.issuer);
        if issuer.is_none() {
            errors.push(ConfigError::MissingField {
                path: format!("{base}.issuer"),
            });
            ok = false;
        }
        let jwks_uri = present(&provider.jwks_uri);
        if let Some(url) = jwks_uri
            && let Err(reason) = check_url(url)
        {
            errors.push(ConfigError::MalformedUrl {
                path: format!("{base}.jwks_uri"),
                url: url.to_owned(),
                reason,
            });
            ok = false;
        }
        let locations = build_jwt_locations(provider.jwt_locations.as_deref(), &base, errors);
        if let (true, Some(id), Some(issuer), Some(jwt_locations)) = (ok, id, issuer, locations) {
            out.push(AuthProvider {
                id: ProviderId::new(id),
                issuer: Issuer::new(issuer),
                // No jwks_uri: the proxy discovers it via OpenID configuration, never at load.
                jwks_uri: jwks_uri.map(JwksUri::new),
                audiences: split_audiences(&provider.audiences),
                jwt_locations,
                exp: if provider.x_esprit_allow_missing_exp.unwrap_or(false) {
                    ExpClaim::Optional
                } else {
                    ExpClaim::Required
                },
            });
        }
    }
    out
}

/// `None` when any location is invalid (already reported).
fn build_jwt_locations(
    locations: Option<&[raw::JwtLocation]>,
    base: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<JwtLocation>> {
    let locations = locations.unwrap_or_default();
    if locations.is_empty() {
        // ESP_REFERENCE: default token locations when `jwt_locations` is empty.
        return Some(JwtLocation::defaults());
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (j, location) in locations.iter().enumerate() {
        let path = format!("{base}.jwt_locations[{j}]");
        let mut invalid = |message: &str| {
            errors.push(ConfigError::InvalidValue {
                path: path.clone(),
                message: message.to_owned(),
            });
        };
        let header = present(&location.header);
        let query = present(&location.query);
        let prefix = location.value_prefix.clone().filter(|p| !p.is_empty());
        if present(&location.cookie).is_some() {
            // ESPv2 does not support cookie locations either.
            invalid("cookie locations are not supported");
            ok = false;
            continue;
        }
        match (header, query) {
            (Some(name), None) if is_http_token(name) => out.push(JwtLocation::Header {
                name: name.to_owned(),
                value_prefix: prefix,
            }),
            (Some(_), None) => {
                invalid("header is not a valid HTTP header name");
                ok = false;
            }
            (None, Some(name)) if prefix.is_none() => out.push(JwtLocation::Query {
                name: name.to_owned(),
            }),
            (None, Some(_)) => {
                invalid("value_prefix applies only to header locations");
                ok = false;
            }
            (Some(_), Some(_)) | (None, None) => {
                invalid("set exactly one of header or query");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// RFC 9110 token characters.
fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Shared checks for the `selector` of every rule kind.
struct RuleCheck<'a> {
    selectors: &'a [Selector],
    check_matches: bool,
    errors: &'a mut Vec<ConfigError>,
}

impl RuleCheck<'_> {
    /// Parses `<base>.selector`; `None` when invalid (already reported).
    fn selector(&mut self, base: &str, selector: &Option<String>) -> Option<RuleSelector> {
        let path = format!("{base}.selector");
        let Some(text) = present(selector) else {
            self.errors.push(ConfigError::MissingField { path });
            return None;
        };
        let parsed = match RuleSelector::parse(text) {
            Ok(parsed) => parsed,
            Err(fault) => {
                self.errors.push(ConfigError::InvalidSelector {
                    path,
                    selector: text.to_owned(),
                    fault,
                });
                return None;
            }
        };
        if self.check_matches {
            // A pattern that matches nothing is a typo or a stale rule; either way the rule
            // the author meant does not apply, which for authentication is a hole.
            for pattern in parsed.patterns() {
                if !self.selectors.iter().any(|s| pattern.matches(s)) {
                    self.errors.push(ConfigError::SelectorMatchesNothing {
                        path: path.clone(),
                        pattern: pattern.to_string(),
                    });
                }
            }
        }
        Some(parsed)
    }
}

fn last_match<'a, T>(rules: &'a [(RuleSelector, T)], selector: &Selector) -> Option<&'a T> {
    rules
        .iter()
        .rev()
        .find(|(rule, _)| rule.matches(selector))
        .map(|(_, value)| value)
}

fn build_auth_rules(
    rules: Vec<raw::AuthRule>,
    providers: &[AuthProvider],
    service_name: &str,
    check: &mut RuleCheck<'_>,
) -> Vec<(RuleSelector, Option<MethodAuth>)> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let base = format!("authentication.rules[{i}]");
        let selector = check.selector(&base, &rule.selector);
        let mut requirements = Vec::new();
        for (j, requirement) in rule.requirements.iter().flatten().enumerate() {
            let path = format!("{base}.requirements[{j}].provider_id");
            let Some(id) = present(&requirement.provider_id) else {
                check.errors.push(ConfigError::MissingField { path });
                continue;
            };
            let Some(provider) = providers.iter().find(|p| p.id.as_str() == id) else {
                // Also reached when the provider exists but was invalid; its own error says why.
                check.errors.push(ConfigError::UnknownProvider {
                    path,
                    id: id.to_owned(),
                });
                continue;
            };
            let mut audiences = split_audiences(&requirement.audiences);
            if audiences.is_empty() {
                audiences = provider.audiences.clone();
            }
            if audiences.is_empty() {
                // ESPv2: no audiences anywhere => https://{service name}; the authn crate
                // compares ignoring the scheme and a trailing slash, so the bare name is kept.
                audiences = vec![Audience::new(service_name)];
            }
            requirements.push(Requirement {
                provider_id: provider.id.clone(),
                audiences,
            });
        }
        let on_missing = if rule.allow_without_credential.unwrap_or(false) {
            OnMissing::Allow
        } else {
            OnMissing::Reject
        };
        if let Some(selector) = selector {
            // A rule without requirements means no JWT check for its methods.
            let auth = (!requirements.is_empty()).then_some(MethodAuth {
                requirements,
                on_missing,
            });
            out.push((selector, auth));
        }
    }
    out
}

fn build_usage_rules(
    rules: Vec<raw::UsageRule>,
    check: &mut RuleCheck<'_>,
) -> Vec<(RuleSelector, ApiKeyRequirement)> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let base = format!("usage.rules[{i}]");
        if let Some(selector) = check.selector(&base, &rule.selector) {
            let requirement = if rule.allow_unregistered_calls.unwrap_or(false) {
                ApiKeyRequirement::NotRequired
            } else {
                ApiKeyRequirement::Required
            };
            out.push((selector, requirement));
        }
    }
    out
}

/// The longest `backend.rules[].deadline` accepted, seconds.
pub(crate) const MAX_BACKEND_DEADLINE_SECS: f64 = 86_400.0;

/// Each rule yields its deadline; `None` when it sets none (absent or 0, as in ESPv2). A rule
/// without a deadline still wins over earlier ones: it resets their deadline for its methods.
fn build_backend_rules(
    rules: Vec<raw::BackendRule>,
    check: &mut RuleCheck<'_>,
) -> Vec<(RuleSelector, Option<Duration>)> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let base = format!("backend.rules[{i}]");
        let selector = check.selector(&base, &rule.selector);
        let deadline = match backend_deadline(rule.deadline) {
            Ok(deadline) => deadline,
            Err(message) => {
                check.errors.push(ConfigError::InvalidValue {
                    path: format!("{base}.deadline"),
                    message,
                });
                continue;
            }
        };
        if let Some(selector) = selector {
            out.push((selector, deadline));
        }
    }
    out
}

/// `deadline` seconds → a duration rounded to the millisecond (ESPv2's rounding). ESPv2 warns
/// about a negative deadline and uses its default; esprit refuses it.
fn backend_deadline(seconds: Option<f64>) -> Result<Option<Duration>, String> {
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "expected a number of seconds, 0 to {MAX_BACKEND_DEADLINE_SECS}, got {seconds}"
        ));
    }
    if seconds > MAX_BACKEND_DEADLINE_SECS {
        return Err(format!(
            "{seconds} s is more than the {MAX_BACKEND_DEADLINE_SECS} s esprit accepts"
        ));
    }
    let millis = (seconds * 1000.0).round() as u64;
    Ok((millis > 0).then(|| Duration::from_millis(millis)))
}

/// Each rule yields the API key locations it sets, or `None` when it has no `api_key` parameter.
fn build_system_parameter_rules(
    rules: Vec<raw::SystemParameterRule>,
    check: &mut RuleCheck<'_>,
) -> Vec<(RuleSelector, Option<Vec<ApiKeyLocation>>)> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let base = format!("system_parameters.rules[{i}]");
        let selector = check.selector(&base, &rule.selector);
        let mut queries = Vec::new();
        let mut headers = Vec::new();
        for (j, parameter) in rule.parameters.iter().flatten().enumerate() {
            let path = format!("{base}.parameters[{j}]");
            let Some(name) = present(&parameter.name) else {
                check.errors.push(ConfigError::MissingField {
                    path: format!("{path}.name"),
                });
                continue;
            };
            if name != "api_key" {
                continue;
            }
            let header = present(&parameter.http_header);
            let query = present(&parameter.url_query_parameter);
            if header.is_none() && query.is_none() {
                check.errors.push(ConfigError::InvalidValue {
                    path,
                    message: "set http_header or url_query_parameter".to_owned(),
                });
                continue;
            }
            if let Some(header) = header {
                if is_http_token(header) {
                    headers.push(ApiKeyLocation::Header(header.to_owned()));
                } else {
                    check.errors.push(ConfigError::InvalidValue {
                        path: format!("{path}.http_header"),
                        message: format!("{header:?} is not a valid HTTP header name"),
                    });
                }
            }
            if let Some(query) = query {
                queries.push(ApiKeyLocation::Query(query.to_owned()));
            }
        }
        // ESPv2 lists query parameters before headers, like the defaults.
        queries.append(&mut headers);
        if let Some(selector) = selector {
            out.push((selector, (!queries.is_empty()).then_some(queries)));
        }
    }
    out
}
