//! The validated, immutable service model.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use prost_reflect::{DescriptorPool, MethodDescriptor};

use crate::caller::AllowedCallers;
use crate::descriptor::Descriptor;
use crate::http::router::Router;
use crate::http::{HttpBinding, HttpMatch};
use crate::selector::Selector;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A stable hash of the config text and descriptor bytes (16 hex digits of SHA-256).
    ConfigId
);
string_newtype!(
    /// `authentication.providers[].id`.
    ProviderId
);
string_newtype!(
    /// A token issuer (`iss`), compared as an exact string.
    Issuer
);
string_newtype!(
    /// An accepted audience (`aud`).
    Audience
);
string_newtype!(
    /// Where a provider's keys are served; an absolute http, https or file URL.
    JwksUri
);

/// One entry of `apis[]`: a protobuf service, by full name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    pub name: String,
}

/// A place a JWT may be found in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtLocation {
    /// A header (name as written in the config; compare case-insensitively). When
    /// `value_prefix` is set, only values starting with it count and the prefix is stripped.
    Header {
        name: String,
        value_prefix: Option<String>,
    },
    /// A URL query parameter.
    Query { name: String },
}

impl JwtLocation {
    /// docs/esp-compatibility.md: the locations used when a provider lists none, in order.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::Header {
                name: "Authorization".to_owned(),
                value_prefix: Some("Bearer ".to_owned()),
            },
            Self::Header {
                name: "X-Goog-Iap-Jwt-Assertion".to_owned(),
                value_prefix: None,
            },
            Self::Query {
                name: "access_token".to_owned(),
            },
        ]
    }
}

impl fmt::Display for JwtLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header {
                name,
                value_prefix: Some(prefix),
            } => write!(f, "header {name} prefix {prefix:?}"),
            Self::Header {
                name,
                value_prefix: None,
            } => write!(f, "header {name}"),
            Self::Query { name } => write!(f, "query {name}"),
        }
    }
}

/// Whether a token without an `exp` claim is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpClaim {
    /// The default: a token without `exp` is rejected (stricter than Envoy, which accepts it).
    Required,
    /// `x_esprit_allow_missing_exp: true` on the provider.
    Optional,
}

/// `authentication.providers[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthProvider {
    pub id: ProviderId,
    pub issuer: Issuer,
    /// `None`: discover it via OpenID (`<issuer>/.well-known/openid-configuration`).
    pub jwks_uri: Option<JwksUri>,
    /// The provider's own audiences, possibly empty. Requirements carry the effective list.
    pub audiences: Vec<Audience>,
    /// Never empty: the configured locations, or [`JwtLocation::defaults`].
    pub jwt_locations: Vec<JwtLocation>,
    pub exp: ExpClaim,
}

/// What to do when a request carries no token at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    Reject,
    /// `allow_without_credential: true`. A present but invalid token is still rejected.
    Allow,
}

/// One way to satisfy a method's authentication: a token from `provider_id` with an `aud` in
/// `audiences`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub provider_id: ProviderId,
    /// Effective audiences, never empty: the requirement's own, else the provider's, else the
    /// service name alone. ESPv2 configures `https://<service name>` for that last case and
    /// compares ignoring a leading `http(s)://` and a trailing `/`; that comparison is the
    /// authn crate's job, this list holds the bare service name.
    pub audiences: Vec<Audience>,
    /// esprit extension `x_esprit_allowed_callers`: the accounts this requirement accepts.
    pub allowed_callers: AllowedCallers,
}

/// The authentication a method needs: any one requirement may validate the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodAuth {
    /// Never empty (a rule without requirements means no JWT check: `Method::auth` is `None`).
    pub requirements: Vec<Requirement>,
    pub on_missing: OnMissing,
}

/// Whether a method needs an API key (`usage.rules[].allow_unregistered_calls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyRequirement {
    Required,
    NotRequired,
}

/// A place an API key may be found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeyLocation {
    Query(String),
    Header(String),
}

impl ApiKeyLocation {
    /// docs/esp-compatibility.md: query `key`, query `api_key`, header `x-api-key`.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::Query("key".to_owned()),
            Self::Query("api_key".to_owned()),
            Self::Header("x-api-key".to_owned()),
        ]
    }
}

impl fmt::Display for ApiKeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query(name) => write!(f, "query {name}"),
            Self::Header(name) => write!(f, "header {name}"),
        }
    }
}

/// One RPC of a configured API, with every rule resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    pub selector: Selector,
    /// `/<package>.<Service>/<Method>`: the HTTP/2 path of a gRPC call.
    pub grpc_path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    /// `None`: no JWT check.
    pub auth: Option<MethodAuth>,
    pub api_key: ApiKeyRequirement,
    /// Never empty.
    pub api_key_locations: Vec<ApiKeyLocation>,
    /// `backend.rules[].deadline` of the last matching rule, rounded to milliseconds as ESPv2
    /// does; `None` when no rule sets one (or it is 0).
    pub backend_deadline: Option<Duration>,
    /// HTTP bindings: the primary one first, then its `additional_bindings` in order; empty
    /// when the method has none. From the config's last matching `http.rules[]` entry, else from
    /// the method's `google.api.http` option.
    pub http: Vec<HttpBinding>,
    pub descriptor: MethodDescriptor,
}

/// A loaded service configuration. Immutable; share it as `Arc<ServiceConfig>` and swap the
/// whole `Arc` to reload.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) id: ConfigId,
    pub(crate) apis: Vec<Api>,
    pub(crate) methods: Vec<Method>,
    pub(crate) providers: Vec<AuthProvider>,
    pub(crate) descriptor: Descriptor,
    pub(crate) by_path: HashMap<String, usize>,
    pub(crate) by_selector: HashMap<String, usize>,
    pub(crate) ignored_sections: Vec<String>,
    pub(crate) allow_cors: bool,
    pub(crate) router: Router,
}

impl ServiceConfig {
    /// The service name, e.g. `bookstore.endpoints.my-project.cloud.goog`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Paths of the sections esprit does not enforce and ignored because the load allowed it
    /// ([`crate::LoadOptions::allow_unenforced`]); empty otherwise.
    pub fn ignored_sections(&self) -> &[String] {
        &self.ignored_sections
    }

    /// Some `endpoints[].allow_cors` is true: CORS preflights are the backend's to answer (ESP).
    pub fn allow_cors(&self) -> bool {
        self.allow_cors
    }

    pub fn id(&self) -> &ConfigId {
        &self.id
    }

    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// Every method of every API, in `apis[]` order then declaration order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    pub fn providers(&self) -> &[AuthProvider] {
        &self.providers
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&AuthProvider> {
        self.providers.iter().find(|p| &p.id == id)
    }

    /// The method a gRPC request path (`/pkg.Service/Method`) calls; `None` means "not defined by
    /// this API".
    pub fn method_by_path(&self, path: &str) -> Option<&Method> {
        self.by_path.get(path).map(|&i| &self.methods[i])
    }

    pub fn method_by_selector(&self, selector: &str) -> Option<&Method> {
        self.by_selector.get(selector).map(|&i| &self.methods[i])
    }

    pub fn descriptor_pool(&self) -> &DescriptorPool {
        self.descriptor.pool()
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The method and binding an HTTP request calls, with its path variables decoded; `None`
    /// when no binding matches (ESP answers 404). `method` is the request's HTTP method, `path`
    /// its URI path still percent-encoded, without the query string. A variable whose value does
    /// not decode to UTF-8 also gives `None`.
    pub fn http_route(&self, method: &str, path: &str) -> Option<HttpMatch<'_>> {
        let ((m, b), request) = self.router.lookup(method, path)?;
        let method = &self.methods[m];
        let binding = &method.http[b];
        let variables = self.router.bind(&binding.template, &request)?;
        Some(HttpMatch {
            method,
            binding,
            variables,
        })
    }

    /// Every HTTP binding of every method, in [`Self::methods`] order.
    pub fn http_routes(&self) -> impl Iterator<Item = (&Method, &HttpBinding)> {
        self.methods
            .iter()
            .flat_map(|method| method.http.iter().map(move |binding| (method, binding)))
    }
}
