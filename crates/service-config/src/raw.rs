//! Serde structs that mirror the `google.api.Service` file, YAML or proto-JSON.
//!
//! Only the fields esprit reads are declared. Every other field is reported by `serde_ignored`
//! and judged by `coverage` (descriptive, unenforced or unknown): declaring a field here means
//! esprit enforces it. Multi-word fields accept both the snake_case (YAML, proto field) and lowerCamel
//! (proto-JSON) spelling. Every field is optional here: presence is checked in `build`, where
//! the error can name the field's path.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Service {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub apis: Option<Vec<Api>>,
    pub authentication: Option<Authentication>,
    pub usage: Option<Usage>,
    pub backend: Option<Backend>,
    #[serde(alias = "systemParameters")]
    pub system_parameters: Option<SystemParameters>,
    #[serde(alias = "sourceInfo")]
    pub source_info: Option<SourceInfo>,
    pub endpoints: Option<Vec<Endpoint>>,
    pub http: Option<Http>,
}

/// `google.api.Http`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Http {
    pub rules: Option<Vec<HttpRule>>,
    #[serde(alias = "fullyDecodeReservedExpansion")]
    pub fully_decode_reserved_expansion: Option<bool>,
}

/// `google.api.HttpRule`; also the form the `google.api.http` method option is read into.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HttpRule {
    pub selector: Option<String>,
    pub get: Option<String>,
    pub put: Option<String>,
    pub post: Option<String>,
    pub delete: Option<String>,
    pub patch: Option<String>,
    pub custom: Option<CustomHttpPattern>,
    pub body: Option<String>,
    #[serde(alias = "responseBody")]
    pub response_body: Option<String>,
    #[serde(alias = "additionalBindings")]
    pub additional_bindings: Option<Vec<HttpRule>>,
}

/// `google.api.CustomHttpPattern`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CustomHttpPattern {
    pub kind: Option<String>,
    pub path: Option<String>,
}

/// `google.api.Endpoint`: esprit reads `allow_cors` (CORS preflights go to the backend).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoint {
    #[serde(alias = "allowCors")]
    pub allow_cors: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Api {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Authentication {
    pub providers: Option<Vec<AuthProvider>>,
    pub rules: Option<Vec<AuthRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuthProvider {
    pub id: Option<String>,
    pub issuer: Option<String>,
    #[serde(alias = "jwksUri")]
    pub jwks_uri: Option<String>,
    /// One comma-separated string (google.api.AuthProvider.audiences).
    pub audiences: Option<String>,
    #[serde(alias = "jwtLocations")]
    pub jwt_locations: Option<Vec<JwtLocation>>,
    /// esprit extension: accept tokens without `exp`.
    #[serde(alias = "xEspritAllowMissingExp")]
    pub x_esprit_allow_missing_exp: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JwtLocation {
    pub header: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
    #[serde(alias = "valuePrefix")]
    pub value_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuthRule {
    pub selector: Option<String>,
    #[serde(alias = "allowWithoutCredential")]
    pub allow_without_credential: Option<bool>,
    pub requirements: Option<Vec<Requirement>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Requirement {
    #[serde(alias = "providerId")]
    pub provider_id: Option<String>,
    /// One comma-separated string (google.api.AuthRequirement.audiences).
    pub audiences: Option<String>,
    /// esprit extension: the accounts (emails) this requirement accepts.
    #[serde(alias = "xEspritAllowedCallers")]
    pub x_esprit_allowed_callers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Usage {
    pub rules: Option<Vec<UsageRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UsageRule {
    pub selector: Option<String>,
    #[serde(alias = "allowUnregisteredCalls")]
    pub allow_unregistered_calls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Backend {
    pub rules: Option<Vec<BackendRule>>,
}

/// `google.api.BackendRule`: esprit reads `selector` and `deadline` (seconds, a double).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BackendRule {
    pub selector: Option<String>,
    pub deadline: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SystemParameters {
    pub rules: Option<Vec<SystemParameterRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SystemParameterRule {
    pub selector: Option<String>,
    pub parameters: Option<Vec<SystemParameter>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SystemParameter {
    pub name: Option<String>,
    #[serde(alias = "httpHeader")]
    pub http_header: Option<String>,
    #[serde(alias = "urlQueryParameter")]
    pub url_query_parameter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SourceInfo {
    #[serde(alias = "sourceFiles")]
    pub source_files: Option<Vec<SourceFile>>,
}

/// A `google.api.servicemanagement.v1.ConfigFile` inside `sourceInfo.sourceFiles[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SourceFile {
    #[serde(alias = "filePath")]
    pub file_path: Option<String>,
    /// base64 (proto-JSON `bytes`).
    #[serde(alias = "fileContents")]
    pub file_contents: Option<String>,
    /// The enum by name (`FILE_DESCRIPTOR_SET_PROTO`) or by number (4).
    #[serde(alias = "fileType")]
    pub file_type: Option<serde_json::Value>,
}

impl SourceFile {
    pub fn is_descriptor_set(&self) -> bool {
        match &self.file_type {
            Some(serde_json::Value::String(name)) => name == "FILE_DESCRIPTOR_SET_PROTO",
            Some(serde_json::Value::Number(number)) => number.as_u64() == Some(4),
            _ => false,
        }
    }
}
