//! The per-method rules (`authentication.rules`, `usage.rules`, `system_parameters.rules`,
//! `backend.rules`):
//! their selectors, what each rule sets, and "last match wins".

use std::time::Duration;

use super::providers::is_http_token;
use super::{present, split_audiences};
use crate::caller::{AllowedCallers, Caller, CallerClaim};
use crate::error::ConfigError;
use crate::model::{
    ApiKeyLocation, ApiKeyRequirement, Audience, AuthProvider, MethodAuth, OnMissing, Requirement,
};
use crate::raw;
use crate::selector::{RuleSelector, Selector};

/// Shared checks for the `selector` of every rule kind.
pub(super) struct RuleCheck<'a> {
    pub selectors: &'a [Selector],
    pub check_matches: bool,
    pub errors: &'a mut Vec<ConfigError>,
}

impl RuleCheck<'_> {
    /// Parses `<base>.selector`; `None` when invalid (already reported).
    pub(super) fn selector(
        &mut self,
        base: &str,
        selector: &Option<String>,
    ) -> Option<RuleSelector> {
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

pub(super) fn last_match<'a, T>(
    rules: &'a [(RuleSelector, T)],
    selector: &Selector,
) -> Option<&'a T> {
    rules
        .iter()
        .rev()
        .find(|(rule, _)| rule.matches(selector))
        .map(|(_, value)| value)
}

pub(super) fn build_auth_rules(
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
            let allowed_callers = build_allowed_callers(
                requirement.x_esprit_allowed_callers.as_deref(),
                provider,
                &format!("{base}.requirements[{j}].x_esprit_allowed_callers"),
                check.errors,
            );
            requirements.push(Requirement {
                provider_id: provider.id.clone(),
                audiences,
                allowed_callers,
            });
        }
        let on_missing = if rule.allow_without_credential.unwrap_or(false) {
            OnMissing::Allow
        } else {
            OnMissing::Reject
        };
        let lists_callers = rule
            .requirements
            .iter()
            .flatten()
            .any(|r| r.x_esprit_allowed_callers.is_some());
        if on_missing == OnMissing::Allow && lists_callers {
            // A call without any token passes an `allow_without_credential` rule with no
            // caller at all, so the list would restrict only callers that identify themselves.
            check.errors.push(ConfigError::InvalidValue {
                path: format!("{base}.allow_without_credential"),
                message: "a rule whose requirements list x_esprit_allowed_callers must not allow \
                          calls without a token (they would bypass the list)"
                    .to_owned(),
            });
        }
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

/// `x_esprit_allowed_callers` of one requirement: absent → any caller; otherwise a non-empty
/// list of distinct plausible emails, each one the provider's tokens can name.
fn build_allowed_callers(
    listed: Option<&[String]>,
    provider: &AuthProvider,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> AllowedCallers {
    let Some(listed) = listed else {
        return AllowedCallers::Any;
    };
    let claim = CallerClaim::of_issuer(provider.issuer.as_str());
    if listed.is_empty() {
        errors.push(ConfigError::InvalidValue {
            path: path.to_owned(),
            message: "list at least one caller email, or remove the field to accept every \
                      account of the provider"
                .to_owned(),
        });
    }
    let mut callers: Vec<Caller> = Vec::with_capacity(listed.len());
    for (k, text) in listed.iter().enumerate() {
        let path = format!("{path}[{k}]");
        let Some(caller) = Caller::parse(text) else {
            errors.push(ConfigError::InvalidValue {
                path,
                message: format!("{text:?} is not an account email (name@domain.example)"),
            });
            continue;
        };
        if callers.contains(&caller) {
            errors.push(ConfigError::InvalidValue {
                path,
                message: format!("{caller} is listed more than once"),
            });
            continue;
        }
        // Another account than a single-account issuer never matches (its tokens all name
        // the issuer, whatever `email` they carry): allowed, and refused at request time.
        callers.push(caller);
    }
    // On errors the load fails anyway; an empty list here never reaches a running proxy.
    AllowedCallers::Listed { claim, callers }
}

pub(super) fn build_usage_rules(
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

/// Each rule yields the API key locations it sets, or `None` when it has no `api_key` parameter.
pub(super) fn build_system_parameter_rules(
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

/// The longest `backend.rules[].deadline` accepted, seconds.
pub(crate) const MAX_BACKEND_DEADLINE_SECS: f64 = 86_400.0;

/// Each rule yields its deadline; `None` when it sets none (absent or 0, as in ESPv2). A rule
/// without a deadline still wins over earlier ones: it resets their deadline for its methods.
pub(super) fn build_backend_rules(
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
