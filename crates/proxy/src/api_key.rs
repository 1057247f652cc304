//! API keys (`usage.rules`, `system_parameters`), checked against esprit's key server.
//!
//! Where a key is found is a pure function of the request ([`find_api_key`]); whether it is
//! valid is asked of the key server (`esprit iam serve`, `POST /v1/services/{service}:check`)
//! through a bounded cache that coalesces concurrent checks of the same key into one request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use service_config::ApiKeyLocation;

/// How API keys are checked. Defaults: 300 s for valid keys (ESP caches Service Control's
/// answers), 60 s for invalid ones (so a newly created key is not refused for long), fail closed.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// Base URL of the key server, e.g. `http://127.0.0.1:8085`. Required when any method needs
    /// a key.
    pub service_control_url: Option<String>,
    pub cache_valid: Duration,
    pub cache_invalid: Duration,
    /// Keys remembered (valid and invalid).
    pub cache_size: u64,
    /// Bound on one check request.
    pub check_timeout: Duration,
    /// When the key server cannot be reached: `Closed` answers `UNAVAILABLE` (esprit's default;
    /// ESP fails open), `Open` lets the call through without a consumer project.
    pub on_unreachable: OnUnreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnreachable {
    FailClosed,
    FailOpen,
}

impl Default for ApiKeySettings {
    fn default() -> Self {
        Self {
            service_control_url: None,
            cache_valid: Duration::from_secs(300),
            cache_invalid: Duration::from_secs(60),
            cache_size: 100_000,
            check_timeout: Duration::from_secs(2),
            on_unreachable: OnUnreachable::FailClosed,
        }
    }
}

/// The first API key at `locations`, in their order (ESP: query `key`, query `api_key`, header
/// `x-api-key`, unless `system_parameters` say otherwise). Header names are compared
/// case-insensitively; query values are percent-decoded.
pub fn find_api_key<'r>(
    locations: &[ApiKeyLocation],
    headers: &'r http::HeaderMap,
    uri: &'r http::Uri,
) -> Option<Cow<'r, str>> {
    for location in locations {
        match location {
            ApiKeyLocation::Query(name) => {
                let found = uri.query().and_then(|query| {
                    form_urlencoded::parse(query.as_bytes())
                        .find(|(k, v)| k == name && !v.is_empty())
                        .map(|(_, v)| v)
                });
                if let Some(value) = found {
                    return Some(value);
                }
            }
            ApiKeyLocation::Header(name) => {
                let found = headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::trim)
                    .find(|v| !v.is_empty());
                if let Some(value) = found {
                    return Some(Cow::Borrowed(value));
                }
            }
        }
    }
    None
}

/// What the key server said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyVerdict {
    Valid {
        consumer_project: Arc<str>,
    },
    /// Unknown or revoked (the reason is for logs).
    Invalid {
        reason: Arc<str>,
    },
}

/// Why a key could not be checked (never cached: the next call asks again).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CheckFailed(String);

pub(crate) struct ApiKeyChecker {
    client: reqwest::Client,
    check_url: String,
    cache: moka::future::Cache<Box<str>, KeyVerdict>,
    pub on_unreachable: OnUnreachable,
}

/// Valid answers live `cache_valid`, invalid ones `cache_invalid`.
struct VerdictExpiry {
    valid: Duration,
    invalid: Duration,
}

impl moka::Expiry<Box<str>, KeyVerdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &KeyVerdict,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            KeyVerdict::Valid { .. } => self.valid,
            KeyVerdict::Invalid { .. } => self.invalid,
        })
    }
}

/// Largest answer read from the key server.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

impl ApiKeyChecker {
    pub(crate) fn new(
        service: &str,
        base_url: &str,
        settings: &ApiKeySettings,
    ) -> Result<Self, CheckFailed> {
        let client = reqwest::Client::builder()
            .no_proxy()
            // The key server is configured by URL: a redirect is an error, not a hint.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.check_timeout)
            .timeout(settings.check_timeout)
            .user_agent(concat!("esprit-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CheckFailed(format!("building the HTTP client: {e}")))?;
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CheckFailed(format!(
                "--service-control-url {base_url:?}: expected an http:// or https:// URL"
            )));
        }
        let service: String =
            form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>();
        Ok(Self {
            client,
            check_url: format!("{base}/v1/services/{service}:check"),
            cache: moka::future::Cache::builder()
                .max_capacity(settings.cache_size)
                .expire_after(VerdictExpiry {
                    valid: settings.cache_valid,
                    invalid: settings.cache_invalid,
                })
                .build(),
            on_unreachable: settings.on_unreachable,
        })
    }

    /// The verdict for `key`: from the cache, or one request shared by every concurrent caller
    /// asking about the same key.
    pub(crate) async fn check(&self, key: &str) -> Result<KeyVerdict, Arc<CheckFailed>> {
        self.cache.try_get_with(Box::from(key), self.ask(key)).await
    }

    async fn ask(&self, key: &str) -> Result<KeyVerdict, CheckFailed> {
        let response = self
            .client
            .post(&self.check_url)
            .json(&serde_json::json!({ "api_key": key }))
            .send()
            .await
            .map_err(|e| CheckFailed(format!("key server unreachable: {}", without_url(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CheckFailed(format!("key server answered HTTP {status}")));
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            CheckFailed(format!(
                "reading the key server's answer: {}",
                without_url(&e)
            ))
        })? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(CheckFailed("key server answer too large".into()));
            }
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| CheckFailed(format!("key server answer is not JSON: {e}")))?;
        match answer.get("valid").and_then(serde_json::Value::as_bool) {
            Some(true) => {
                let project = answer
                    .get("consumer_project")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| {
                        CheckFailed("key server answer lacks consumer_project".into())
                    })?;
                Ok(KeyVerdict::Valid {
                    consumer_project: Arc::from(project),
                })
            }
            Some(false) => {
                let reason = answer
                    .get("reason")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("invalid");
                Ok(KeyVerdict::Invalid {
                    reason: Arc::from(reason),
                })
            }
            None => Err(CheckFailed("key server answer lacks \"valid\"".into())),
        }
    }
}

/// reqwest errors print the URL; ours carries no secret, but keep log lines short and uniform.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locations_in_order() {
        let defaults = ApiKeyLocation::defaults();
        // (URI, headers, the key found)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Case] = &[
            ("/m?key=q1&api_key=q2", &[("x-api-key", "h")], Some("q1")),
            ("/m?api_key=q2", &[("x-api-key", "h")], Some("q2")),
            ("/m", &[("x-api-key", "h")], Some("h")),
            ("/m?key=a%2Bb%20c", &[], Some("a+b c")),
            ("/m?key=", &[("x-api-key", "h")], Some("h")),
            ("/m?other=1", &[], None),
            ("/m", &[("x-api-key", "")], None),
            ("/m", &[], None),
        ];
        for (uri, headers, want) in table {
            let uri: http::Uri = uri.parse().unwrap();
            let mut map = http::HeaderMap::new();
            for (k, v) in *headers {
                map.insert(*k, v.parse().unwrap());
            }
            assert_eq!(
                find_api_key(&defaults, &map, &uri).as_deref(),
                *want,
                "{uri}"
            );
        }
    }

    #[test]
    fn configured_locations_replace_the_defaults() {
        let locations = vec![ApiKeyLocation::Header("X-My-Key".into())];
        let uri: http::Uri = "/m?key=q".parse().unwrap();
        let mut map = http::HeaderMap::new();
        map.insert("x-my-key", "mine".parse().unwrap());
        map.insert("x-api-key", "default".parse().unwrap());
        assert_eq!(
            find_api_key(&locations, &map, &uri).as_deref(),
            Some("mine")
        );
    }
}
