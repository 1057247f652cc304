//! Shared helpers of the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::time::Duration;

use keysets::CachedKeySet;
use service_config::{AuthProvider, ExpClaim, Issuer, JwksUri, JwtLocation, ProviderId};

pub fn provider(id: &str, issuer: &str, jwks_uri: Option<String>) -> AuthProvider {
    AuthProvider {
        id: ProviderId::new(id),
        issuer: Issuer::new(issuer),
        jwks_uri: jwks_uri.map(JwksUri::new),
        audiences: Vec::new(),
        jwt_locations: JwtLocation::defaults(),
        exp: ExpClaim::Required,
    }
}

pub fn kids_of(set: &jose::KeySet) -> Vec<String> {
    set.keys()
        .iter()
        .map(|k| k.kid().map_or("-".to_owned(), |kid| kid.to_string()))
        .collect()
}

pub fn kids(state: &CachedKeySet) -> Option<Vec<String>> {
    match state {
        CachedKeySet::Ready(set) => Some(kids_of(set)),
        CachedKeySet::NotFetched { .. } => None,
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("keysets=debug")
        .try_init();
}
