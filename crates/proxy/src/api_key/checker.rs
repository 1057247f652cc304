//! Asking the key server (`POST /v1/services/{service}:check`, the `keycheck` contract), behind
//! a cache bounded in bytes and a cap on outstanding requests; with several key servers
//! (`--service-control-url` repeated), spread over them with failover and passive ejection, as
//! [`super::replicas`] decides.
//!
//! Memory: entries are keyed by the key's SHA-256, so no key a client sent is kept. Valid
//! answers are weighed in bytes (digest, consumer project, bookkeeping) against
//! `cache_bytes`, each weighing at least `cache_bytes / cache_size` so `cache_size` bounds their
//! number too. Invalid answers (anyone can mint invalid keys) live in a cache of their own,
//! capped at `invalid_cache_size` fixed-size entries, so they can neither grow memory nor push
//! valid keys out.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::metrics::{ApiKeyMetrics, AttemptOutcome, ReplicaMetrics};

use clock::SharedClock;
use http::HeaderValue;
use tokio::sync::Semaphore;

use super::ApiKeySettings;
use super::OnUnreachable;
use super::decide::{Answer, CheckError};
use super::replicas::{self, Health, Replicas, Transition};

/// SHA-256 of a key: what the caches are keyed by.
pub(crate) type KeyDigest = [u8; 32];

/// What one cache entry costs besides its value: the digest, moka's bookkeeping (node,
/// timer-wheel and frequency-sketch entries), measured roughly.
pub(crate) const ENTRY_OVERHEAD_BYTES: u32 = 160;

/// Largest answer read from the key server.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

pub(crate) fn digest(key: &str) -> KeyDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A valid answer and until when (by the injected clock) it may be used.
#[derive(Clone, Debug)]
pub(crate) struct ValidEntry {
    consumer_project: HeaderValue,
    expires_at: SystemTime,
}

/// The cache of valid answers: weighed in bytes, at most `cache_bytes`. Expiry is each entry's
/// `expires_at` against the injected clock; moka's time-to-live (its own monotonic clock) only
/// bounds how long the memory is held.
pub(crate) fn valid_cache(settings: &ApiKeySettings) -> moka::future::Cache<KeyDigest, ValidEntry> {
    let floor = settings.cache_bytes / settings.cache_size.max(1);
    let floor = u32::try_from(floor).unwrap_or(u32::MAX);
    moka::future::Cache::builder()
        .max_capacity(settings.cache_bytes)
        .weigher(move |_key: &KeyDigest, entry: &ValidEntry| {
            let real = ENTRY_OVERHEAD_BYTES
                .saturating_add(u32::try_from(entry.consumer_project.len()).unwrap_or(u32::MAX));
            real.max(floor)
        })
        .time_to_live(settings.cache_valid)
        .build()
}

/// The cache of invalid answers: fixed-size entries (their expiry by the injected clock), at
/// most `invalid_cache_size`.
pub(crate) fn invalid_cache(settings: &ApiKeySettings) -> moka::sync::Cache<KeyDigest, SystemTime> {
    moka::sync::Cache::builder()
        .max_capacity(settings.invalid_cache_size)
        .time_to_live(settings.cache_invalid)
        .build()
}

/// Why the shared lookup did not produce a valid key (errors are not cached by moka; invalid
/// answers go to their own cache).
#[derive(Debug)]
enum Miss {
    Invalid,
    Failed(CheckError),
}

/// One configured key server (`--service-control-url`): where its checks go, and its label.
struct Replica {
    check_url: String,
    /// `host:port` of the configured URL: the replica's name in logs and metrics (bounded: one
    /// per flag; no path, no user info).
    label: String,
    metrics: Option<ReplicaMetrics>,
}

/// How one attempt at one replica ended.
#[derive(Debug)]
enum Attempt {
    /// A 2xx answer, read (its verdict, or `Invalid` when it has none).
    Answered(Answer),
    /// A 4xx: the key counts as invalid, and the replica is up. Never retried elsewhere.
    Refused(http::StatusCode),
    /// A 401/403: the key server refused the proxy's own credentials (`--service-account-key`).
    /// About the proxy, not the key: never cached, fails closed, and the replica is up.
    NotAuthorized(String),
    Failed(Failure),
}

/// Why an attempt got no answer: the next replica is tried, within the check's budget.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("connect error: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("answered HTTP {0}")]
    ServerError(http::StatusCode),
    #[error("{0}")]
    Transport(String),
}

impl Attempt {
    /// The outcome label of `esprit_api_key_server_attempts` (a fixed set).
    fn outcome(&self) -> AttemptOutcome {
        match self {
            Attempt::Answered(_) => AttemptOutcome::Answered,
            Attempt::Refused(_) | Attempt::NotAuthorized(_) => AttemptOutcome::Refused,
            Attempt::Failed(Failure::Connect(_)) => AttemptOutcome::ConnectError,
            Attempt::Failed(Failure::Timeout(_)) => AttemptOutcome::Timeout,
            Attempt::Failed(Failure::ServerError(_)) => AttemptOutcome::ServerError,
            Attempt::Failed(Failure::Transport(_)) => AttemptOutcome::TransportError,
        }
    }

    fn health(&self) -> Health {
        match self {
            Attempt::Answered(_) | Attempt::Refused(_) | Attempt::NotAuthorized(_) => {
                Health::Answered
            }
            Attempt::Failed(_) => Health::Failed,
        }
    }
}

pub(crate) struct ApiKeyChecker {
    client: reqwest::Client,
    /// The configured key servers, in flag order (indexes of [`Replicas`]).
    servers: Vec<Replica>,
    /// Their health: which to ask next, which are ejected.
    replicas: Mutex<Replicas>,
    /// The budget of one check, every attempt included.
    check_timeout: std::time::Duration,
    valid: moka::future::Cache<KeyDigest, ValidEntry>,
    invalid: moka::sync::Cache<KeyDigest, SystemTime>,
    outstanding: Semaphore,
    pub on_unreachable: OnUnreachable,
    /// Read for the caches' expiry and the replicas' ejections.
    clock: SharedClock,
    cache_valid: std::time::Duration,
    cache_invalid: std::time::Duration,
    /// Cache hits and misses, key-server latency (with `--admin-listen`).
    metrics: Option<ApiKeyMetrics>,
    /// Signs the `Authorization` of every check (`--service-account-key`).
    credentials: Option<std::sync::Arc<super::CallerCredentials>>,
}

impl ApiKeyChecker {
    /// A checker asking the key servers at `base_urls` (at least one) about `service`'s keys.
    pub(crate) fn new(
        service: &str,
        base_urls: &[String],
        settings: &ApiKeySettings,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &settings.service_control_ca {
            let roots =
                keysets::extra_roots(path).map_err(|e| match std::error::Error::source(&e) {
                    Some(cause) => format!("--service-control-ca: {e}: {cause}"),
                    None => format!("--service-control-ca: {e}"),
                })?;
            builder = builder.tls_certs_merge(roots);
        }
        let client = builder
            .no_proxy()
            // The key server is configured by URL: a redirect is an error, not a hint.
            .redirect(reqwest::redirect::Policy::none())
            // Backstops: each attempt is bounded by its share of the budget (`ask`).
            .connect_timeout(settings.check_timeout)
            .timeout(settings.check_timeout)
            .user_agent(concat!("esprit-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let service: String =
            form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>();
        let mut servers: Vec<Replica> = Vec::with_capacity(base_urls.len());
        for base_url in base_urls {
            let base = base_url.trim_end_matches('/');
            let url = reqwest::Url::parse(base)
                .map_err(|e| format!("--service-control-url {base_url:?}: not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "--service-control-url {base_url:?}: expected an http:// or https:// URL"
                ));
            }
            let check_url = format!("{base}{}", keycheck::check_path(&service));
            let host = url.host_str().unwrap_or_default();
            let label = match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            servers.push(Replica {
                check_url,
                label,
                metrics: None,
            });
        }
        if servers.is_empty() {
            return Err("no --service-control-url to check keys with".to_owned());
        }
        Ok(Self {
            client,
            replicas: Mutex::new(Replicas::new(servers.len(), settings.ejection)),
            servers,
            check_timeout: settings.check_timeout,
            valid: valid_cache(settings),
            invalid: invalid_cache(settings),
            outstanding: Semaphore::new(settings.max_pending_checks.max(1)),
            on_unreachable: settings.on_unreachable,
            clock,
            cache_valid: settings.cache_valid,
            cache_invalid: settings.cache_invalid,
            metrics: None,
            credentials: settings.service_account_key.clone(),
        })
    }

    pub(crate) fn with_metrics(mut self, metrics: Option<ApiKeyMetrics>) -> Self {
        if let Some(metrics) = &metrics {
            for server in &mut self.servers {
                server.metrics = Some(metrics.replica(&server.label));
            }
        }
        self.metrics = metrics;
        self
    }

    /// Replicas ejected now (`esprit_api_key_servers_ejected`, read at scrape time).
    pub(crate) fn ejected_replicas(&self) -> usize {
        self.lock_replicas().ejected(self.clock.now())
    }

    fn lock_replicas(&self) -> std::sync::MutexGuard<'_, Replicas> {
        // The state is a few counters updated in one step: usable even if a holder panicked.
        self.replicas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer for `key`: from a cache, or one request shared by every concurrent caller
    /// asking about the same key, if fewer than the cap are outstanding.
    pub(crate) async fn check(&self, key: &str) -> Result<Answer, CheckError> {
        let digest = digest(key);
        let now = self.clock.now();
        let metrics = self.metrics.as_ref();
        match self.invalid.get(&digest) {
            Some(expires_at) if now < expires_at => {
                ApiKeyMetrics::hit(metrics);
                return Ok(Answer::Invalid);
            }
            Some(_) => self.invalid.invalidate(&digest),
            None => {}
        }
        match self.valid.get(&digest).await {
            Some(entry) if now < entry.expires_at => {
                ApiKeyMetrics::hit(metrics);
                return Ok(Answer::Valid {
                    consumer_project: entry.consumer_project,
                });
            }
            // Expired by the injected clock: ask again (below, shared with concurrent callers).
            Some(_) => self.valid.invalidate(&digest).await,
            None => {}
        }
        ApiKeyMetrics::miss(metrics);
        let lookup = async {
            let Ok(_permit) = self.outstanding.try_acquire() else {
                return Err(Miss::Failed(CheckError::Overloaded));
            };
            let asked = std::time::Instant::now();
            let answer = self.ask(key).await;
            ApiKeyMetrics::asked(metrics, asked.elapsed());
            match answer {
                Ok(Answer::Valid { consumer_project }) => Ok(ValidEntry {
                    consumer_project,
                    expires_at: now + self.cache_valid,
                }),
                Ok(Answer::Invalid) => {
                    self.invalid.insert(digest, now + self.cache_invalid);
                    Err(Miss::Invalid)
                }
                Err(err) => Err(Miss::Failed(err)),
            }
        };
        match self.valid.try_get_with(digest, lookup).await {
            Ok(entry) => Ok(Answer::Valid {
                consumer_project: entry.consumer_project,
            }),
            Err(miss) => match &*miss {
                Miss::Invalid => Ok(Answer::Invalid),
                Miss::Failed(err) => Err(err.clone()),
            },
        }
    }

    /// One check: the replicas in the order [`Replicas::plan`] gives, each at most once, until
    /// one answers or the check's budget is spent. Unreachable (fail-open may apply) only when
    /// no replica answered; a 4xx or an answer without a verdict means the key is not valid.
    async fn ask(&self, key: &str) -> Result<Answer, CheckError> {
        let deadline = tokio::time::Instant::now() + self.check_timeout;
        // Signed once per check (the credentials cache the token), whichever replica answers.
        let authorization = match &self.credentials {
            Some(credentials) => Some(
                credentials
                    .authorization(self.clock.unix_secs())
                    .map_err(CheckError::NotAuthorized)?,
            ),
            None => None,
        };
        let plan = self.lock_replicas().plan(self.clock.now());
        let mut failures: Vec<String> = Vec::new();
        for (tried, &index) in plan.iter().enumerate() {
            let Some(server) = self.servers.get(index) else {
                continue;
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                failures.push(format!(
                    "the check timeout ({:?}) ran out before {} more",
                    self.check_timeout,
                    plan.len() - tried
                ));
                break;
            }
            let timeout = replicas::attempt_timeout(remaining, plan.len() - tried);
            let attempt =
                tokio::time::timeout(timeout, self.attempt(server, key, authorization.as_ref()))
                    .await
                    .unwrap_or(Attempt::Failed(Failure::Timeout(timeout)));
            self.record(index, server, &attempt);
            match attempt {
                Attempt::Answered(answer) => return Ok(answer),
                Attempt::NotAuthorized(refusal) => return Err(CheckError::NotAuthorized(refusal)),
                Attempt::Refused(status) => {
                    tracing::warn!(%status, replica = %server.label, "key server refused the check; the key counts as invalid");
                    return Ok(Answer::Invalid);
                }
                Attempt::Failed(failure) => {
                    if tried + 1 < plan.len() {
                        tracing::warn!(replica = %server.label, error = %failure, "key server attempt failed; asking another");
                    }
                    failures.push(format!("{}: {failure}", server.label));
                }
            }
        }
        Err(CheckError::Unreachable(failures.join("; ")))
    }

    /// The attempt's metrics, and its effect on the replica's health.
    fn record(&self, index: usize, server: &Replica, attempt: &Attempt) {
        if let Some(metrics) = &server.metrics {
            metrics.attempted(attempt.outcome());
        }
        let transition = self
            .lock_replicas()
            .record(index, attempt.health(), self.clock.now());
        match transition {
            Transition::None => {}
            Transition::Ejected { until } => {
                let for_secs = until
                    .duration_since(self.clock.now())
                    .map_or(0, |d| d.as_secs());
                tracing::warn!(replica = %server.label, for_secs, "key server ejected after consecutive failures");
                if let Some(metrics) = &server.metrics {
                    metrics.ejected();
                }
            }
            Transition::Readmitted => {
                tracing::info!(replica = %server.label, "key server answered again; readmitted");
            }
        }
    }

    /// One request to one replica (its whole answer read, unbounded in time: `ask` bounds it).
    async fn attempt(
        &self,
        server: &Replica,
        key: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Attempt {
        let request = keycheck::CheckRequest {
            api_key: key.to_owned(),
        };
        let mut builder = self.client.post(&server.check_url).json(&request);
        if let Some(authorization) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, authorization.clone());
        }
        let sent = builder.send().await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(Failure::Timeout(self.check_timeout));
            }
            Err(e) if e.is_connect() => return Attempt::Failed(Failure::Connect(without_url(&e))),
            Err(e) => return Attempt::Failed(Failure::Transport(without_url(&e))),
        };
        let status = response.status();
        if status.is_server_error() {
            return Attempt::Failed(Failure::ServerError(status));
        }
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            // About the proxy, not the key: never cached, and fails closed. The body only
            // explains; read up to the same bound as an answer.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ANSWER_BYTES {
                    body.clear();
                    break;
                }
            }
            return Attempt::NotAuthorized(super::credentials::refusal_message(
                status,
                &body,
                self.credentials.as_deref(),
            ));
        }
        if !status.is_success() {
            return Attempt::Refused(status);
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        tracing::warn!("key server answer too large; the key counts as invalid");
                        return Attempt::Answered(Answer::Invalid);
                    }
                }
                Ok(None) => return Attempt::Answered(parse_answer(&body)),
                Err(e) => {
                    return Attempt::Failed(Failure::Transport(format!(
                        "reading the answer: {}",
                        without_url(&e)
                    )));
                }
            }
        }
    }
}

/// The verdict in an answer body; anything without one is an invalid key.
pub(crate) fn parse_answer(body: &[u8]) -> Answer {
    match keycheck::CheckResponse::from_json(body) {
        Ok(keycheck::CheckResponse::Valid { consumer_project }) => {
            match HeaderValue::from_str(&consumer_project) {
                Ok(consumer_project) => Answer::Valid { consumer_project },
                Err(_) => {
                    tracing::warn!(
                        "key server's consumer project is not a header value; the key counts as invalid"
                    );
                    Answer::Invalid
                }
            }
        }
        Ok(keycheck::CheckResponse::Invalid) => Answer::Invalid,
        Err(err) => {
            tracing::warn!(error = %err, "key server answer has no verdict; the key counts as invalid");
            Answer::Invalid
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_without_a_verdict_are_invalid() {
        assert_eq!(
            parse_answer(br#"{"valid":true,"consumer_project":"p"}"#),
            Answer::Valid {
                consumer_project: HeaderValue::from_static("p")
            }
        );
        for body in [
            &b"{}"[..],
            b"",
            b"<html>",
            br#"{"valid":"yes"}"#,
            br#"{"valid":true}"#,
            br#"{"valid":true,"consumer_project":"a\nb"}"#,
            br#"{"valid":false}"#,
        ] {
            assert_eq!(parse_answer(body), Answer::Invalid, "{body:?}");
        }
    }

    #[test]
    fn the_valid_cache_stays_under_its_byte_budget() {
        let settings = ApiKeySettings {
            cache_bytes: 64 * 1024,
            cache_size: 1_000_000,
            ..ApiKeySettings::default()
        };
        let cache = valid_cache(&settings);
        let project =
            HeaderValue::from_str(&"p".repeat(keycheck::MAX_CONSUMER_PROJECT_BYTES)).unwrap();
        futures::executor::block_on(async {
            for i in 0..10_000u32 {
                let entry = ValidEntry {
                    consumer_project: project.clone(),
                    expires_at: SystemTime::UNIX_EPOCH,
                };
                cache.insert(digest(&i.to_string()), entry).await;
            }
            cache.run_pending_tasks().await;
        });
        assert!(
            cache.weighted_size() <= settings.cache_bytes,
            "{}",
            cache.weighted_size()
        );
        assert!(cache.entry_count() > 0);
        // Each entry weighs at least its real bytes.
        assert!(cache.entry_count() <= 64 * 1024 / (u64::from(ENTRY_OVERHEAD_BYTES) + 256));
    }

    #[test]
    fn entries_are_bounded_by_count_too() {
        let settings = ApiKeySettings {
            cache_bytes: 1024 * 1024,
            cache_size: 100,
            ..ApiKeySettings::default()
        };
        let cache = valid_cache(&settings);
        futures::executor::block_on(async {
            for i in 0..5_000u32 {
                let entry = ValidEntry {
                    consumer_project: HeaderValue::from_static("p"),
                    expires_at: SystemTime::UNIX_EPOCH,
                };
                cache.insert(digest(&i.to_string()), entry).await;
            }
            cache.run_pending_tasks().await;
        });
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
    }

    #[test]
    fn the_invalid_cache_is_capped_apart() {
        let settings = ApiKeySettings {
            invalid_cache_size: 50,
            ..ApiKeySettings::default()
        };
        let cache = invalid_cache(&settings);
        for i in 0..5_000u32 {
            cache.insert(digest(&i.to_string()), SystemTime::UNIX_EPOCH);
        }
        cache.run_pending_tasks();
        assert!(cache.entry_count() <= 50, "{}", cache.entry_count());
    }

    #[test]
    fn digests_are_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let hex: String = digest("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
