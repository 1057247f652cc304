//! Conversion of the serde layer into the model: validation, ESP defaults, rule resolution.
//!
//! Every check pushes onto one list instead of returning early, so a user sees all problems
//! of a config at once.

mod apis;
mod http;
mod providers;
mod rules;

use crate::descriptor::Descriptor;
use crate::error::{ConfigError, ConfigErrors};
use crate::model::{ApiKeyLocation, ApiKeyRequirement, Audience, ConfigId, ServiceConfig};
use crate::selector::Selector;
use crate::{LoadOptions, Parsed};

use apis::build_apis;
use http::build_http;
use providers::build_providers;
use rules::{
    RuleCheck, build_auth_rules, build_backend_rules, build_system_parameter_rules,
    build_usage_rules, last_match,
};

/// What the caller knows about the descriptor.
pub(crate) enum DescriptorInput {
    Given(Descriptor),
    /// Loading it failed; the error is already in the list.
    Failed(ConfigError),
    Absent,
}

pub(crate) fn build(
    text: &str,
    parsed: Parsed,
    descriptor: DescriptorInput,
    options: LoadOptions,
) -> Result<ServiceConfig, ConfigErrors> {
    let Parsed { service, unread } = parsed;
    // Unknown fields first: a typo is often the cause of a later error (a missing field).
    let mut errors = unread.unknown;
    let ignored_sections = if options.allow_unenforced {
        unread.unenforced
    } else {
        errors.extend(
            unread
                .unenforced
                .into_iter()
                .map(|path| ConfigError::Unenforced { path }),
        );
        Vec::new()
    };
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
        // docs/esp-compatibility.md: a matching `api_key` system parameter replaces the default locations.
        method.api_key_locations = last_match(&key_rules, &method.selector)
            .cloned()
            .flatten()
            .unwrap_or_else(ApiKeyLocation::defaults);
    }

    let router = build_http(
        service.http.unwrap_or_default(),
        &mut methods,
        descriptor.as_ref().map(Descriptor::pool),
        &mut rules,
    );

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
        ignored_sections,
        // ESP: `allow_cors` on any endpoint sends preflights to the backend.
        allow_cors: service
            .endpoints
            .iter()
            .flatten()
            .any(|e| e.allow_cors == Some(true)),
        router,
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
