//! `service-config`: turns ESP's `google.api.Service` configuration into a validated,
//! immutable [`ServiceConfig`].
//!
//! It reads the YAML source form together with an API descriptor (a binary
//! `FileDescriptorSet`, or `.proto` files compiled in-process with the two googleapis files
//! vendored), and the expanded JSON form that `gcloud endpoints configs describe --format=json`
//! prints, with its embedded descriptor. It resolves every rule (`authentication`, `usage`,
//! `system_parameters`, `backend`, `http`; last match wins) per method and applies ESP's
//! defaults, so the proxy only looks methods up: by gRPC path, or by HTTP method and path
//! ([`ServiceConfig::http_route`], from the `google.api.http` options and `http.rules`).
//! Invalid configs are rejected with every problem and its field path.
//!
//! It deliberately does no I/O beyond reading the named files, never touches the network (no key
//! fetching, no OpenID discovery), and does not interpret quotas, logging or monitoring; the
//! descriptor pool is exposed for whoever needs more. Sections that would change who may call
//! or how calls are treated, but that esprit does not enforce, are refused unless
//! [`LoadOptions::allow_unenforced`] is set; unknown fields are always refused (`coverage`).

mod caller;
mod coverage;
mod descriptor;
mod error;
mod http;
mod model;
mod raw;
mod resolve;
mod selector;
mod uri;

use std::path::{Path, PathBuf};

use base64::Engine as _;

pub use caller::{AllowedCallers, Caller, CallerClaim};
pub use descriptor::Descriptor;
pub use error::{ConfigError, ConfigErrors};
pub use http::{HttpBinding, HttpBody, HttpMatch, PathTemplate, TemplateError};
pub use model::{
    Api, ApiKeyLocation, ApiKeyRequirement, Audience, AuthProvider, ConfigId, ExpClaim, Issuer,
    JwksUri, JwtLocation, Method, MethodAuth, OnMissing, ProviderId, Requirement, ServiceConfig,
};
pub use prost_reflect::DescriptorPool;
pub use selector::{RuleSelector, Selector, SelectorFault, SelectorPattern};

use resolve::DescriptorInput;

/// The label used in errors for config text that did not come from a named file.
const TEXT_LABEL: &str = "service config";

/// How strict a load is. The default refuses every section esprit does not enforce.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Accept sections esprit does not enforce (quota, CORS, …) and list them in
    /// [`ServiceConfig::ignored_sections`] instead of refusing the config. Unknown fields are
    /// refused either way.
    pub allow_unenforced: bool,
}

impl LoadOptions {
    pub fn allow_unenforced(mut self, allow: bool) -> Self {
        self.allow_unenforced = allow;
        self
    }
}

/// A parsed document: the fields esprit reads, and where the others were.
pub(crate) struct Parsed {
    pub service: raw::Service,
    pub unread: coverage::Findings,
}

/// Builds a config from the YAML source form and its descriptor.
pub fn from_yaml(text: &str, descriptor: Descriptor) -> Result<ServiceConfig, ConfigErrors> {
    let parsed = parse_yaml(text, TEXT_LABEL)?;
    resolve::build(
        text,
        parsed,
        DescriptorInput::Given(descriptor),
        LoadOptions::default(),
    )
}

/// Builds a config from the expanded proto-JSON form. A `descriptor` given here replaces the
/// one embedded in `sourceInfo.sourceFiles[]`.
pub fn from_json(
    text: &str,
    descriptor: Option<Descriptor>,
) -> Result<ServiceConfig, ConfigErrors> {
    let parsed = parse_json(text, TEXT_LABEL)?;
    let descriptor = match descriptor {
        Some(descriptor) => DescriptorInput::Given(descriptor),
        None => embedded_descriptor(&parsed.service),
    };
    resolve::build(text, parsed, descriptor, LoadOptions::default())
}

/// Reads a config file (YAML or JSON, told apart by content: JSON starts with `{`) and the
/// descriptor files (`.proto` sources, or binary `FileDescriptorSet`s), then builds the config.
pub fn load(
    config_path: &Path,
    descriptor_paths: &[PathBuf],
) -> Result<ServiceConfig, ConfigErrors> {
    load_with(config_path, descriptor_paths, LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(
    config_path: &Path,
    descriptor_paths: &[PathBuf],
    options: LoadOptions,
) -> Result<ServiceConfig, ConfigErrors> {
    let label = config_path.display().to_string();
    let text = std::fs::read_to_string(config_path).map_err(|source| ConfigError::Read {
        path: label.clone(),
        source,
    })?;
    let given = (!descriptor_paths.is_empty()).then(|| Descriptor::load(descriptor_paths));
    let is_json = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{');
    let parsed = if is_json {
        parse_json(&text, &label)
    } else {
        parse_yaml(&text, &label)
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(errors) => {
            // Report a descriptor problem too, not only the syntax error.
            let mut all: Vec<ConfigError> = given.and_then(Result::err).into_iter().collect();
            all.extend(errors.into_vec());
            return Err(ConfigErrors::new(all));
        }
    };
    let descriptor = match (given, is_json) {
        (Some(Ok(descriptor)), _) => DescriptorInput::Given(descriptor),
        (Some(Err(error)), _) => DescriptorInput::Failed(error),
        (None, true) => embedded_descriptor(&parsed.service),
        (None, false) => DescriptorInput::Absent,
    };
    resolve::build(&text, parsed, descriptor, options)
}

fn parse_yaml(text: &str, label: &str) -> Result<Parsed, ConfigErrors> {
    let mut ignored = Vec::new();
    let service: Option<raw::Service> =
        serde_ignored::deserialize(yaml_serde::Deserializer::from_str(text), |path| {
            ignored.push(coverage::segments(&path))
        })
        .map_err(|err| ConfigError::Syntax {
            path: label.to_owned(),
            message: format!("invalid YAML: {err}"),
        })?;
    // The generic form looks inside sections serde skipped whole; `None` only for YAML that
    // has no JSON equivalent (non-string keys), where those sections are then judged whole.
    let tree = (!ignored.is_empty())
        .then(|| yaml_serde::from_str::<serde_json::Value>(text).ok())
        .flatten();
    Ok(Parsed {
        service: service.unwrap_or_default(),
        unread: coverage::classify(&ignored, tree.as_ref()),
    })
}

fn parse_json(text: &str, label: &str) -> Result<Parsed, ConfigErrors> {
    let syntax = |err: serde_json::Error| ConfigError::Syntax {
        path: label.to_owned(),
        message: format!("invalid JSON: {err}"),
    };
    let mut ignored = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let service: raw::Service = serde_ignored::deserialize(&mut deserializer, |path| {
        ignored.push(coverage::segments(&path));
    })
    .map_err(syntax)?;
    deserializer.end().map_err(syntax)?;
    let tree = (!ignored.is_empty())
        .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
        .flatten();
    Ok(Parsed {
        service,
        unread: coverage::classify(&ignored, tree.as_ref()),
    })
}

/// The `FILE_DESCRIPTOR_SET_PROTO` files of `sourceInfo.sourceFiles[]`, decoded into one pool.
fn embedded_descriptor(service: &raw::Service) -> DescriptorInput {
    // proto-JSON `bytes` may use the standard or URL-safe alphabet, padded or not.
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    let standard = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);

    let files = service
        .source_info
        .as_ref()
        .and_then(|info| info.source_files.as_deref())
        .unwrap_or_default();
    let mut sets = Vec::new();
    for (i, file) in files.iter().enumerate() {
        if !file.is_descriptor_set() {
            continue;
        }
        let path = format!("source_info.source_files[{i}].file_contents");
        let contents = file.file_contents.as_deref().unwrap_or_default();
        let bytes = match standard.decode(contents) {
            Ok(bytes) => bytes,
            Err(err) => match url_safe.decode(contents) {
                Ok(bytes) => bytes,
                Err(_) => {
                    return DescriptorInput::Failed(ConfigError::InvalidBase64 {
                        path,
                        source: err,
                    });
                }
            },
        };
        sets.push((path, bytes));
    }
    if sets.is_empty() {
        return DescriptorInput::Absent;
    }
    match Descriptor::from_sets(sets) {
        Ok(descriptor) => DescriptorInput::Given(descriptor),
        Err(error) => DescriptorInput::Failed(error),
    }
}
