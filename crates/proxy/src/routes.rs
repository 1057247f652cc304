//! The route step: which gRPC paths belong to the API, and what applies to each. Built from the
//! service configuration at start-up and on each reload, then only read: a reload builds a new
//! table and swaps it in whole (`handler::State::routes`).
//!
//! A route carries everything its checks need (the JWT policy with the authenticator, the key
//! locations with the checker), so a route that requires a check the proxy cannot make cannot
//! be built: the table refuses the configuration instead.

use std::collections::HashMap;
use std::sync::Arc;

use service_config::ApiKeyRequirement;

use crate::ProxyError;
use crate::api_key::{ApiKeyChecker, KeyRequirement};
use crate::auth::{Authenticator, JwtRequirement};
use crate::body::CallLog;
use crate::metrics::{MethodMetrics, ProxyMetrics, UNDEFINED_METHOD};
use crate::protocol::Protocol;
use crate::reflection::{
    Index, Reflection, V1_PATH, V1_SELECTOR, V1ALPHA_PATH, V1ALPHA_SELECTOR, Version,
};
use crate::settings::ProxySettings;
use crate::stream::{CallTimeouts, call_timeouts};
use crate::transcoding::HttpRoutes;
use crate::wire::Rejection;

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
    /// `--reflection-rules-of` names a method the API does not have (or the API has none).
    #[error(
        "--reflection-rules-of: reflection calls follow the rules of a method of the API, \
         and {0:?} is not one"
    )]
    ReflectionRules(String),
}

/// One method of the API as the proxy needs it on the hot path.
pub(crate) struct Route {
    /// `package.Service.Method`, used in logs.
    pub selector: Arc<str>,
    /// The method's JWT rule and the authenticator; `None` when it checks no JWT.
    pub jwt: Option<JwtRequirement>,
    /// Where to look for the API key and who checks it; `None` when the method allows
    /// unregistered calls.
    pub api_key: Option<KeyRequirement>,
    /// The method's deadline and stream idle timeout, from its `backend.rules[].deadline`,
    /// whether it streams, and `--stream-idle-timeout` ([`crate::stream::call_timeouts`]).
    pub timeouts: CallTimeouts,
    /// The method's metrics, when the admin listener is on.
    pub metrics: Option<Arc<MethodMetrics>>,
    /// `Some` for the reflection paths (`--reflection`): the proxy answers, never the backend.
    pub reflection: Option<Reflection>,
}

/// gRPC path (`/package.Service/Method`) → route.
#[derive(Default)]
pub(crate) struct RouteTable {
    /// Read on every call. The keys come from the configuration (a client's path is only looked
    /// up, never inserted), so a fast hasher (randomly seeded all the same) is safe here.
    by_path: HashMap<Box<str>, Arc<Route>, foldhash::fast::RandomState>,
    /// With `--reflection`: the reflection paths, answered by the proxy (not methods of the API).
    reflection: Vec<(&'static str, Arc<Route>)>,
    /// The metrics of paths that are not methods (one label value for all of them).
    undefined: Option<Arc<MethodMetrics>>,
    /// The HTTP rules of the API's methods (HTTP/JSON transcoding), when some method has one.
    http: Option<HttpRoutes>,
    /// The key sets, when some method checks JWTs (readiness and metrics read them).
    pub keys: Option<keysets::JwksCache>,
    /// What the next configuration's table may keep: the authenticator (key caches), and the
    /// API-key checker with the service name it checks keys for.
    authenticator: Option<Arc<Authenticator>>,
    checker: Option<(String, Arc<ApiKeyChecker>)>,
}

impl RouteTable {
    /// One route per method of the configured API. Starts the authenticator (key-set fetching
    /// in the background) when some method checks JWTs, and makes the key checker when some
    /// method needs an API key. Fails closed: a config asking for a check this proxy cannot
    /// perform is refused, never served without the check.
    ///
    /// On a reload, `previous` is the table in force: what it holds that the new configuration
    /// does not change is kept rather than rebuilt (see [`Authenticator::reconfigure`]; the
    /// API-key checker and its caches when the service name is the same).
    pub(crate) fn from_config(
        config: &service_config::ServiceConfig,
        settings: &ProxySettings,
        metrics: Option<&ProxyMetrics>,
        previous: Option<&RouteTable>,
    ) -> Result<Self, ProxyError> {
        let (auth, api_keys) = (&settings.auth, &settings.api_keys);
        let stream_idle_timeout = settings.stream_idle_timeout;
        let needs_key: Vec<String> = config
            .methods()
            .iter()
            .filter(|m| m.api_key == ApiKeyRequirement::Required)
            .map(|m| m.selector.as_str().to_owned())
            .collect();
        let urls = &api_keys.service_control_urls;
        crate::api_key::check_urls(urls, api_keys.allow_insecure_http)
            .map_err(ProxyError::ApiKeys)?;
        let kept_checker = previous
            .and_then(|table| table.checker.as_ref())
            .filter(|(service, _)| service == config.name())
            .map(|(_, checker)| checker.clone());
        let checker = match (urls.is_empty(), needs_key.is_empty()) {
            (_, true) => None,
            (true, false) => return Err(Unenforceable::ApiKeys(needs_key).into()),
            (false, false) if kept_checker.is_some() => kept_checker,
            (false, false) => Some(Arc::new(
                ApiKeyChecker::new(config.name(), urls, api_keys, settings.clock.clone())
                    .map_err(ProxyError::ApiKeys)?
                    .with_metrics(metrics.map(ProxyMetrics::api_key)),
            )),
        };
        let policy = authn::AuthPolicy::from_config(config);
        let auth_metrics = || metrics.map(|m| m.auth(config.providers()));
        let authenticator = match previous.and_then(|table| table.authenticator.as_ref()) {
            _ if !policy.methods().any(|(_, p)| p.requires_jwt()) => None,
            Some(previous) => Some(Arc::new(previous.reconfigure(config, auth, auth_metrics()))),
            None => Some(Arc::new(Authenticator::start(
                config,
                auth,
                settings.clock.clone(),
                auth_metrics(),
            )?)),
        };
        let routes = config.methods().iter().map(|m| {
            let jwt = policy
                .method(&m.grpc_path)
                .filter(|p| p.requires_jwt())
                .zip(authenticator.as_ref())
                .map(|(policy, authenticator)| JwtRequirement {
                    policy: policy.clone(),
                    authenticator: authenticator.clone(),
                });
            let api_key = (m.api_key == ApiKeyRequirement::Required)
                .then_some(checker.as_ref())
                .flatten()
                .map(|checker| KeyRequirement {
                    locations: Arc::from(m.api_key_locations.as_slice()),
                    checker: checker.clone(),
                });
            let route = Route {
                selector: Arc::from(m.selector.as_str()),
                jwt,
                api_key,
                timeouts: call_timeouts(
                    m.backend_deadline,
                    m.client_streaming || m.server_streaming,
                    stream_idle_timeout,
                ),
                metrics: metrics.map(|metrics| metrics.method(m.selector.as_str())),
                reflection: None,
            };
            (m.grpc_path.clone(), route)
        });
        let mut table = Self::new(routes);
        if let Some(reflection) = &settings.reflection {
            table.reflection =
                reflection_routes(config, reflection, &table, metrics, stream_idle_timeout)?;
        }
        table.undefined = metrics.map(|metrics| metrics.method(UNDEFINED_METHOD));
        table.http = HttpRoutes::new(config, &settings.transcoding);
        table.keys = authenticator.as_ref().map(|a| a.keys().clone());
        table.authenticator = authenticator;
        table.checker = checker.map(|checker| (config.name().to_owned(), checker));
        Ok(table)
    }

    /// `(gRPC path, route)` pairs, one per method of the API.
    pub(crate) fn new(routes: impl IntoIterator<Item = (String, Route)>) -> Self {
        let by_path = routes
            .into_iter()
            .map(|(path, route)| (path.into_boxed_str(), Arc::new(route)))
            .collect();
        Self {
            by_path,
            reflection: Vec::new(),
            undefined: None,
            http: None,
            keys: None,
            authenticator: None,
            checker: None,
        }
    }

    /// The API-key checker, when some method needs a key (metrics read its replicas' health).
    pub(crate) fn api_key_checker(&self) -> Option<&Arc<ApiKeyChecker>> {
        self.checker.as_ref().map(|(_, checker)| checker)
    }

    /// Methods in the table.
    pub(crate) fn len(&self) -> usize {
        self.by_path.len()
    }

    /// The step: the method a call is for, by its gRPC path, or, for a plain HTTP request, by
    /// the HTTP rule that binds its method and path (the call then speaks HTTP/JSON: `protocol`
    /// becomes [`Protocol::Transcoded`]); else "not defined by this API" (ESP's 404).
    pub(crate) fn route_call(
        &self,
        parts: &http::request::Parts,
        protocol: &mut Protocol,
        log: &mut CallLog,
    ) -> Result<&Arc<Route>, Rejection> {
        let path = parts.uri.path();
        match self.route(path, log) {
            Err(Rejection::UndefinedMethod) if protocol.may_transcode() => {
                let call = self
                    .http
                    .as_ref()
                    .and_then(|http| http.find(&parts.method, path))
                    .ok_or(Rejection::UndefinedMethod)?;
                let route = self
                    .by_path
                    .get(call.grpc_path.as_str())
                    .ok_or(Rejection::UndefinedMethod)?;
                log.set_selector(route.selector.clone());
                log.set_metrics(route.metrics.as_ref());
                *protocol = Protocol::Transcoded(Box::new(call));
                Ok(route)
            }
            found => found,
        }
    }

    /// The method at `path`, or "not defined by this API" (ESP's 404).
    pub(crate) fn route(&self, path: &str, log: &mut CallLog) -> Result<&Arc<Route>, Rejection> {
        let reflection = || {
            self.reflection
                .iter()
                .find(|(at, _)| *at == path)
                .map(|(_, route)| route)
        };
        match self.by_path.get(path).or_else(reflection) {
            Some(route) => {
                log.set_selector(route.selector.clone());
                log.set_metrics(route.metrics.as_ref());
                Ok(route)
            }
            None => {
                log.set_path(path);
                log.set_metrics(self.undefined.as_ref());
                Err(Rejection::UndefinedMethod)
            }
        }
    }
}

/// The two reflection routes, with the checks of the method `--reflection-rules-of` names (the
/// API's first method by default), so reflection asks the credentials that method asks.
fn reflection_routes(
    config: &service_config::ServiceConfig,
    settings: &crate::settings::ReflectionSettings,
    table: &RouteTable,
    metrics: Option<&ProxyMetrics>,
    stream_idle_timeout: std::time::Duration,
) -> Result<Vec<(&'static str, Arc<Route>)>, ProxyError> {
    let method = match &settings.rules_of {
        Some(selector) => config.method_by_selector(selector),
        None => config.methods().first(),
    };
    let rules = method
        .and_then(|m| table.by_path.get(m.grpc_path.as_str()))
        .ok_or_else(|| {
            Unenforceable::ReflectionRules(settings.rules_of.clone().unwrap_or_default())
        })?;
    let index = Arc::new(Index::new(config));
    let versions = [
        (V1_PATH, V1_SELECTOR, Version::V1),
        (V1ALPHA_PATH, V1ALPHA_SELECTOR, Version::V1Alpha),
    ];
    Ok(versions
        .into_iter()
        .map(|(path, selector, version)| {
            let route = Route {
                selector: Arc::from(selector),
                jwt: rules.jwt.as_ref().map(|jwt| JwtRequirement {
                    policy: jwt.policy.clone(),
                    authenticator: jwt.authenticator.clone(),
                }),
                api_key: rules.api_key.as_ref().map(|key| KeyRequirement {
                    locations: key.locations.clone(),
                    checker: key.checker.clone(),
                }),
                timeouts: call_timeouts(None, true, stream_idle_timeout),
                metrics: metrics.map(|metrics| metrics.method(selector)),
                reflection: Some(Reflection {
                    version,
                    index: index.clone(),
                }),
            };
            (path, Arc::new(route))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const PATHS: [&str; 3] = ["/p.S/A", "/p.S/B", "/q.v1.T/Call"];

    fn table() -> RouteTable {
        RouteTable::new(PATHS.iter().map(|p| {
            let route = Route {
                selector: Arc::from(&p[1..]),
                jwt: None,
                api_key: None,
                timeouts: call_timeouts(None, false, std::time::Duration::from_secs(300)),
                metrics: None,
                reflection: None,
            };
            (p.to_string(), route)
        }))
    }

    fn log() -> CallLog {
        CallLog::new(
            "127.0.0.1:1".parse().unwrap(),
            std::time::Instant::now(),
            &crate::access_log::RejectedLines::new(Default::default()),
        )
    }

    #[test]
    fn exact_paths_only() {
        let table = table();
        assert_eq!(
            &*table.route("/p.S/A", &mut log()).unwrap().selector,
            "p.S/A"
        );
        for path in [
            "/p.S/a", "/p.S/A/", "p.S/A", "/p.S/A?x", "//p.S/A", "/p.S", "", "/",
        ] {
            assert!(
                matches!(
                    table.route(path, &mut log()),
                    Err(Rejection::UndefinedMethod)
                ),
                "{path}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_paths_route_only_when_configured(path in any::<String>()) {
            let found = table().route(&path, &mut log()).is_ok();
            prop_assert_eq!(found, PATHS.contains(&path.as_str()));
        }

        #[test]
        fn near_miss_paths_do_not_route(i in 0usize..3, edit in "[/a-zA-Z.%0-9]{0,3}", at in 0usize..16) {
            let path = PATHS[i];
            let at = at.min(path.len());
            let mutated = format!("{}{}{}", &path[..at], edit, &path[at..]);
            let found = table().route(&mutated, &mut log()).is_ok();
            prop_assert_eq!(found, PATHS.contains(&mutated.as_str()));
        }
    }
}
