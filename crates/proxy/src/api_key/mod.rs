//! The API-key step (`usage.rules`, `system_parameters`): find the key, ask esprit's key server
//! about it, and forward with the consumer project or refuse.
//!
//! Where a key is found is a pure function of the request ([`find_api_key`]); what the answer
//! means is a pure function of the answer ([`decide`]); asking is the checker's job
//! ([`checker::ApiKeyChecker`]: a byte-bounded cache keyed by SHA-256, one request shared by
//! every concurrent caller of one key, and a cap on outstanding requests); which of several key
//! servers to ask, and when one is ejected, is a pure decision too ([`replicas`]).

mod checker;
mod credentials;
mod decide;
mod find;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use service_config::ApiKeyLocation;

use crate::body::CallLog;
use crate::wire::Rejection;

pub(crate) use checker::ApiKeyChecker;
pub use credentials::{CallerCredentials, RESIGN_BEFORE_EXPIRY_SECS};
pub use find::find_api_key;
pub use replicas::EjectionPolicy;

/// Whether the key server at `url` may be asked: `https://` always; `http://` only to a
/// loopback host (127.0.0.0/8, ::1, `localhost`) unless `allow_insecure_http`, because the
/// check carries the caller's API key. The error is the operator's message.
pub fn check_url_transport(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("--service-control-url {url:?}: not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "--service-control-url {url:?}: plain http:// to a host that is not loopback would \
             send API keys in clear text; use https:// (--service-control-ca FILE for a private \
             CA) or pass --service-control-allow-insecure-http"
        )),
        _ => Err(format!(
            "--service-control-url {url:?}: expected an http:// or https:// URL"
        )),
    }
}

/// Most key servers (`--service-control-url` given this often at most): each one is a label
/// of the metrics, and each may cost a check one attempt.
pub(crate) const MAX_KEY_SERVERS: usize = 16;

/// Every `--service-control-url` at once: at most [`MAX_KEY_SERVERS`], none twice, each allowed
/// by [`check_url_transport`]. The error is the operator's message.
pub(crate) fn check_urls(urls: &[String], allow_insecure_http: bool) -> Result<(), String> {
    if urls.len() > MAX_KEY_SERVERS {
        return Err(format!(
            "--service-control-url: at most {MAX_KEY_SERVERS} key servers, {} given",
            urls.len()
        ));
    }
    for (i, url) in urls.iter().enumerate() {
        check_url_transport(url, allow_insecure_http)?;
        let same = |other: &String| other.trim_end_matches('/') == url.trim_end_matches('/');
        if urls[..i].iter().any(same) {
            return Err(format!("--service-control-url {url:?}: given twice"));
        }
    }
    Ok(())
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

const CONSUMER_PROJECT: http::HeaderName =
    http::HeaderName::from_static("x-endpoint-api-consumer-project");

/// How API keys are checked. Defaults: 300 s for valid keys (ESP caches Service Control's
/// answers), 60 s for invalid ones (so a newly created key is not refused for long), fail closed.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// Base URLs of the key servers (`--service-control-url`, repeatable), e.g.
    /// `http://127.0.0.1:8085`: replicas on one store, any of which may answer any check. At
    /// least one is required when any method needs a key.
    pub service_control_urls: Vec<String>,
    /// Extra CA certificates (PEM) trusted for an `https` key server, on top of the system
    /// roots (`--service-control-ca`).
    pub service_control_ca: Option<std::path::PathBuf>,
    /// The proxy's service account (`--service-account-key FILE`, read once at start): every
    /// check carries `Authorization: Bearer` with a JWT it signs. Without it, checks carry no
    /// credentials (for a key server running `--check-auth off`).
    pub service_account_key: Option<Arc<CallerCredentials>>,
    /// Allow a plain `http://` key server that is not on loopback
    /// (`--service-control-allow-insecure-http`); refused at start otherwise.
    pub allow_insecure_http: bool,
    pub cache_valid: Duration,
    pub cache_invalid: Duration,
    /// Valid keys remembered.
    pub cache_size: u64,
    /// Bytes the valid keys' cache may occupy (digest, consumer project, bookkeeping).
    pub cache_bytes: u64,
    /// Invalid keys remembered: capped apart from the valid ones, because any client can mint
    /// invalid keys and must not push valid ones out or grow memory.
    pub invalid_cache_size: u64,
    /// Key-server checks outstanding at once; a call that would exceed it is refused
    /// (`UNAVAILABLE`), never let through, even with fail-open.
    pub max_pending_checks: usize,
    /// Budget of one check, every attempt at every replica included
    /// (`--service-control-check-timeout`). Each attempt gets an equal share of what is left
    /// among the attempts still planned.
    pub check_timeout: Duration,
    /// When a key server that keeps failing is left out, and for how long.
    pub ejection: EjectionPolicy,
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
            service_control_urls: Vec::new(),
            service_control_ca: None,
            service_account_key: None,
            allow_insecure_http: false,
            cache_valid: Duration::from_secs(300),
            cache_invalid: Duration::from_secs(60),
            cache_size: 100_000,
            cache_bytes: 32 * 1024 * 1024,
            invalid_cache_size: 10_000,
            max_pending_checks: 256,
            check_timeout: Duration::from_secs(2),
            ejection: EjectionPolicy::default(),
            on_unreachable: OnUnreachable::FailClosed,
        }
    }
}

/// What a route that needs an API key carries: where to look, and who to ask.
pub(crate) struct KeyRequirement {
    pub locations: Arc<[ApiKeyLocation]>,
    pub checker: Arc<ApiKeyChecker>,
}

impl KeyRequirement {
    /// The step: on success the request carries the consumer project (when the key was
    /// checked); client-sent copies were removed by the sanitize step.
    pub(crate) async fn check(
        &self,
        parts: &mut http::request::Parts,
        log: &mut CallLog,
    ) -> Result<(), Rejection> {
        let found = find_api_key(&self.locations, &parts.headers, &parts.uri);
        let decision = match decide::admit(found.as_deref()) {
            Ok(key) => {
                // Boxed: the check's future (a key-server request inside the cache's coalescing)
                // is about 2 KiB. Inline, it would make every call's future that large, calls
                // without an API key too, and hyper moves a call's future several times.
                let answer = Box::pin(self.checker.check(key)).await;
                if let Err(err) = &answer {
                    let on_unreachable = self.checker.on_unreachable;
                    tracing::warn!(error = %err, ?on_unreachable, "API key could not be checked");
                }
                decide::decide(answer, self.checker.on_unreachable)
            }
            Err(decision) => decision,
        };
        log.set_api_key_outcome(decision.outcome);
        match decision.action {
            decide::Action::Forward { consumer_project } => {
                if let Some(project) = consumer_project {
                    parts.headers.insert(CONSUMER_PROJECT, project);
                }
                Ok(())
            }
            decide::Action::Reject(rejection) => Err(rejection),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for (url, allowed, ok) in [
            ("https://keys.example.com", false, true),
            ("https://10.0.0.1:8443", false, true),
            ("http://127.0.0.1:8085", false, true),
            ("http://127.9.9.9:8085", false, true),
            ("http://localhost:8085", false, true),
            ("http://LocalHost:8085", false, true),
            ("http://[::1]:8085", false, true),
            ("http://10.0.0.1:8085", false, false),
            ("http://keys.example.com", false, false),
            ("http://localhost.example.com", false, false),
            ("http://[::ffff:10.0.0.1]:8085", false, false),
            ("http://10.0.0.1:8085", true, true),
            ("ftp://127.0.0.1", true, false),
            ("not a url", true, false),
        ] {
            assert_eq!(
                check_url_transport(url, allowed).is_ok(),
                ok,
                "{url} allowed={allowed}"
            );
        }
    }

    #[test]
    fn every_url_is_checked_none_twice_and_at_most_sixteen() {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let many: Vec<String> = (0..17)
            .map(|i| format!("http://127.0.0.1:{}", 8000 + i))
            .collect();
        for (list, allowed, want) in [
            (
                urls(&["http://127.0.0.1:1", "https://keys.example.com"]),
                false,
                Ok(()),
            ),
            (
                urls(&["http://127.0.0.1:1", "http://10.0.0.1:1"]),
                false,
                Err("not loopback"),
            ),
            (
                urls(&["http://127.0.0.1:1", "http://10.0.0.1:1"]),
                true,
                Ok(()),
            ),
            (
                urls(&["http://127.0.0.1:1", "http://127.0.0.1:1/"]),
                false,
                Err("given twice"),
            ),
            (urls(&[]), false, Ok(())),
            (many[..16].to_vec(), false, Ok(())),
            (many, false, Err("at most 16 key servers, 17 given")),
        ] {
            match (check_urls(&list, allowed), want) {
                (Ok(()), Ok(())) => {}
                (Err(err), Err(part)) => assert!(err.contains(part), "{list:?}: {err}"),
                (got, want) => panic!("{list:?}: {got:?}, want {want:?}"),
            }
        }
    }

    /// The step on its own, with a checker whose key server is not listening.
    fn requirement(on_unreachable: OnUnreachable) -> KeyRequirement {
        let settings = ApiKeySettings {
            on_unreachable,
            check_timeout: Duration::from_secs(5),
            ..ApiKeySettings::default()
        };
        let checker = ApiKeyChecker::new(
            "svc",
            &["http://127.0.0.1:9".into()],
            &settings,
            clock::system(),
        )
        .unwrap();
        KeyRequirement {
            locations: Arc::from(ApiKeyLocation::defaults().as_slice()),
            checker: Arc::new(checker),
        }
    }

    fn parts(uri: &str) -> http::request::Parts {
        http::Request::post(uri).body(()).unwrap().into_parts().0
    }

    fn log() -> CallLog {
        CallLog::new(
            "127.0.0.1:1".parse().unwrap(),
            std::time::Instant::now(),
            &crate::access_log::RejectedLines::new(Default::default()),
        )
    }

    #[tokio::test]
    async fn the_step_refuses_without_asking_and_fails_open_without_vouching() {
        let closed = requirement(OnUnreachable::FailClosed);
        let open = requirement(OnUnreachable::FailOpen);
        for step in [&closed, &open] {
            let missing = step.check(&mut parts("/m"), &mut log()).await;
            assert!(matches!(missing, Err(Rejection::ApiKeyMissing)));
            let long = format!("/m?key={}", "k".repeat(keycheck::MAX_API_KEY_BYTES + 1));
            let too_long = step.check(&mut parts(&long), &mut log()).await;
            assert!(matches!(too_long, Err(Rejection::ApiKeyInvalid)));
        }
        let unreachable = closed.check(&mut parts("/m?key=AIzaK"), &mut log()).await;
        assert!(matches!(
            unreachable,
            Err(Rejection::ApiKeyCheckUnavailable)
        ));
        let mut through = parts("/m?key=AIzaK");
        open.check(&mut through, &mut log()).await.unwrap();
        assert!(through.headers.get(CONSUMER_PROJECT).is_none());
    }
}
