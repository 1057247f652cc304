//! The one error type of this crate, and the list of them a load returns.

use std::fmt;

use crate::http::TemplateError;
use crate::selector::SelectorFault;

/// A problem with a service configuration or its descriptor.
///
/// Every variant carries the path of the offending field in the source vocabulary
/// (`authentication.providers[1].jwks_uri`), or the file name when the file itself is unreadable;
/// [`ConfigError::path`] returns it. Paths use the snake_case field names of the YAML form even
/// when the input was the lowerCamel JSON form, so one set of docs explains both.
/// The messages are shown to operators by `esprit config check`; keep them stable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{path}: cannot read file")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML/JSON, or a field has the wrong type.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// A field esprit does not know: most likely a typo, and ignoring it could drop a rule.
    #[error(
        "{path}: unknown field{}",
        .suggestion.as_ref().map(|name| format!(" (did you mean {name:?}?)")).unwrap_or_default()
    )]
    UnknownField {
        path: String,
        suggestion: Option<String>,
    },
    /// A section that would change who may call or how calls are treated, which esprit does
    /// not enforce.
    #[error(
        "{path}: esprit does not enforce this section; remove it, or pass \
         --allow-unenforced-config to run with it ignored"
    )]
    Unenforced { path: String },
    /// A required field is absent or empty.
    #[error("{path}: required field is missing")]
    MissingField { path: String },
    /// A field holds a value this crate does not accept.
    #[error("{path}: {message}")]
    InvalidValue { path: String, message: String },
    /// A selector is not valid selector syntax.
    #[error("{path}: invalid selector {selector:?}: {fault}")]
    InvalidSelector {
        path: String,
        selector: String,
        fault: SelectorFault,
    },
    /// A selector pattern matches no method of the configured APIs.
    #[error("{path}: selector {pattern:?} matches no method of the configured APIs")]
    SelectorMatchesNothing { path: String, pattern: String },
    /// `apis[].name` names a service that the descriptor does not define.
    #[error("{path}: service {name:?} is not defined in the descriptor")]
    UnknownApi { path: String, name: String },
    /// The same API is listed twice.
    #[error("{path}: API {name:?} is listed more than once")]
    DuplicateApi { path: String, name: String },
    /// A requirement names a provider id that `authentication.providers` does not define.
    #[error("{path}: unknown provider id {id:?}")]
    UnknownProvider { path: String, id: String },
    /// Two providers share an id.
    #[error("{path}: duplicate provider id {id:?} (first defined at {first})")]
    DuplicateProvider {
        path: String,
        id: String,
        first: String,
    },
    /// A URL field is not an absolute http, https or file URL.
    #[error("{path}: malformed URL {url:?}: {reason}")]
    MalformedUrl {
        path: String,
        url: String,
        reason: &'static str,
    },
    /// Neither a descriptor file nor an embedded descriptor was given.
    #[error(
        "{path}: no API descriptor: pass --descriptor (a FileDescriptorSet .pb or .proto files) \
         or a JSON service config with an embedded FILE_DESCRIPTOR_SET_PROTO"
    )]
    NoDescriptor { path: String },
    /// Descriptor bytes are not a valid `FileDescriptorSet`.
    #[error("{path}: invalid FileDescriptorSet")]
    InvalidDescriptor {
        path: String,
        #[source]
        source: prost_reflect::DescriptorError,
    },
    /// `.proto` files did not compile.
    #[error("{path}: cannot compile protos")]
    ProtoCompile {
        path: String,
        #[source]
        source: Box<protox::Error>,
    },
    /// An HTTP path template (`http.rules[].get`, or a `google.api.http` option) does not parse.
    #[error("{path}: invalid path template {template:?}: {error}")]
    InvalidTemplate {
        path: String,
        template: String,
        error: TemplateError,
    },
    /// Two bindings route the same HTTP method and path template. `second` is the selector of the
    /// binding at `path`, `first` the one bound earlier (they may be the same method).
    #[error("{path}: HTTP route {route} is bound to both {first} and {second}")]
    HttpRouteConflict {
        path: String,
        route: String,
        first: String,
        second: String,
    },
    /// An embedded descriptor is not valid base64.
    #[error("{path}: invalid base64")]
    InvalidBase64 {
        path: String,
        #[source]
        source: base64::DecodeError,
    },
}

impl ConfigError {
    /// The path of the offending field (or file).
    pub fn path(&self) -> &str {
        match self {
            Self::Read { path, .. }
            | Self::Syntax { path, .. }
            | Self::UnknownField { path, .. }
            | Self::Unenforced { path }
            | Self::MissingField { path }
            | Self::InvalidValue { path, .. }
            | Self::InvalidSelector { path, .. }
            | Self::SelectorMatchesNothing { path, .. }
            | Self::UnknownApi { path, .. }
            | Self::DuplicateApi { path, .. }
            | Self::UnknownProvider { path, .. }
            | Self::DuplicateProvider { path, .. }
            | Self::MalformedUrl { path, .. }
            | Self::NoDescriptor { path }
            | Self::InvalidDescriptor { path, .. }
            | Self::ProtoCompile { path, .. }
            | Self::InvalidTemplate { path, .. }
            | Self::HttpRouteConflict { path, .. }
            | Self::InvalidBase64 { path, .. } => path,
        }
    }
}

/// Every problem found in one load, in the order found. Never empty.
///
/// `Display` prints one line per problem, each followed by its causes (`: cause: cause`).
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        debug_assert!(!errors.is_empty());
        Self(errors)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
            let mut cause = std::error::Error::source(error);
            while let Some(source) = cause {
                // Causes may span lines (protox renders source snippets); keep one line each.
                let text = source.to_string();
                write!(
                    f,
                    ": {}",
                    text.split_whitespace().collect::<Vec<_>>().join(" ")
                )?;
                cause = source.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
