//! Which gRPC paths belong to the API, and what applies to each. Built once at start-up from the
//! service configuration, then only read.

use std::collections::HashMap;
use std::sync::Arc;

use service_config::{ApiKeyLocation, ApiKeyRequirement};

/// A configuration that asks for checks the proxy was not set up to perform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unenforceable {
    /// ESP: a method without `usage.rules[].allow_unregistered_calls: true` needs an API key.
    #[error(
        "these methods require an API key (no usage rule with allow_unregistered_calls: true), \
         but no --service-control-url is given to check keys with: {}",
        .0.join(", ")
    )]
    ApiKeys(Vec<String>),
}

/// One method of the API as the proxy needs it on the hot path.
#[derive(Debug)]
pub struct Route {
    /// `package.Service.Method`, used in logs.
    pub selector: Arc<str>,
    /// The method's JWT rule, compiled; `None` when it checks no JWT.
    pub auth: Option<Arc<authn::MethodPolicy>>,
    /// Where to look for the API key the method requires; `None` when it allows unregistered
    /// calls.
    pub api_key: Option<Arc<[ApiKeyLocation]>>,
    /// The method's `backend.rules[].deadline`, and whether the method streams (either way):
    /// see [`crate::stream::call_timeouts`].
    pub backend_deadline: Option<std::time::Duration>,
    pub streaming: bool,
}

/// gRPC path (`/package.Service/Method`) → route.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_path: HashMap<Box<str>, Arc<Route>>,
}

impl RouteTable {
    /// One route per method of the configured API. Fails closed: a config asking for a check
    /// this proxy cannot perform is refused, never served without the check.
    pub fn from_config(
        config: &service_config::ServiceConfig,
        api_keys_checkable: bool,
    ) -> Result<Self, Unenforceable> {
        let needs_key: Vec<String> = config
            .methods()
            .iter()
            .filter(|m| m.api_key == ApiKeyRequirement::Required)
            .map(|m| m.selector.as_str().to_owned())
            .collect();
        if !needs_key.is_empty() && !api_keys_checkable {
            return Err(Unenforceable::ApiKeys(needs_key));
        }
        let policy = authn::AuthPolicy::from_config(config);
        Ok(Self::new(config.methods().iter().map(|m| {
            let route = Route {
                selector: Arc::from(m.selector.as_str()),
                auth: policy
                    .method(&m.grpc_path)
                    .filter(|p| p.requires_jwt())
                    .cloned(),
                api_key: (m.api_key == ApiKeyRequirement::Required)
                    .then(|| Arc::from(m.api_key_locations.as_slice())),
                backend_deadline: m.backend_deadline,
                streaming: m.client_streaming || m.server_streaming,
            };
            (m.grpc_path.clone(), route)
        })))
    }

    /// `(gRPC path, route)` pairs, one per method of the API.
    pub fn new(routes: impl IntoIterator<Item = (String, Route)>) -> Self {
        let by_path = routes
            .into_iter()
            .map(|(path, route)| (path.into_boxed_str(), Arc::new(route)))
            .collect();
        Self { by_path }
    }

    pub fn get(&self, path: &str) -> Option<&Arc<Route>> {
        self.by_path.get(path)
    }

    /// Whether any method checks JWTs (and so key sets must be fetched).
    pub fn any_auth(&self) -> bool {
        self.by_path.values().any(|r| r.auth.is_some())
    }

    /// Whether any method needs an API key.
    pub fn any_api_key(&self) -> bool {
        self.by_path.values().any(|r| r.api_key.is_some())
    }
}
