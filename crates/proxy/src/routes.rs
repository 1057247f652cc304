//! Which gRPC paths belong to the API, and what applies to each. Built once at start-up from the
//! service configuration, then only read.

use std::collections::HashMap;
use std::sync::Arc;

/// One method of the API as the proxy needs it on the hot path.
#[derive(Debug)]
pub struct Route {
    /// `package.Service.Method`, used in logs.
    pub selector: Arc<str>,
}

/// gRPC path (`/package.Service/Method`) → route.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_path: HashMap<Box<str>, Arc<Route>>,
}

impl RouteTable {
    /// One route per method of the configured API.
    pub fn from_config(config: &service_config::ServiceConfig) -> Self {
        Self::new(config.methods().iter().map(|m| {
            let route = Route {
                selector: Arc::from(m.selector.as_str()),
            };
            (m.grpc_path.clone(), route)
        }))
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

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}
