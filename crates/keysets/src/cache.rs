//! The per-provider key-set cache: background refresh, stale bound, single-flight refetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use jose::{KeySet, Kid};
use service_config::{AuthProvider, ProviderId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::budget::{RefetchBudget, RefetchDecision};
use crate::{CachedKeySet, FetchError, Fetcher, JwksSettings, Refetch};

/// The shortest wait between two background fetches of one provider, whatever the settings
/// say, so a zero duration cannot make a refresh task spin.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// Key sets of every configured provider, kept fresh in the background.
///
/// Cheap to clone (an `Arc`). Dropping the last clone stops the refresh tasks.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JwksSettings,
    fetcher: Fetcher,
    /// Read on every call that checks a JWT; the keys come from the configuration, so a fast
    /// hasher (randomly seeded all the same) is safe here.
    slots: HashMap<ProviderId, Arc<Running>, foldhash::fast::RandomState>,
}

/// A provider's state and its refresh task. Shared by the caches of successive configurations
/// while the provider's definition is unchanged ([`JwksCache::reconfigure`]); the task stops
/// when the last cache holding it is dropped.
struct Running {
    slot: Arc<Slot>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    fn new(slot: Slot) -> Arc<Self> {
        Arc::new(Self {
            slot: Arc::new(slot),
            task: Mutex::new(None),
        })
    }

    fn stop(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// What a provider's keys depend on: a provider whose id, issuer (OpenID discovery) and
/// `jwks_uri` are unchanged has the same keys, whatever its audiences or token locations.
fn same_keys(a: &AuthProvider, b: &AuthProvider) -> bool {
    a.id == b.id && a.issuer == b.issuer && a.jwks_uri == b.jwks_uri
}

/// One provider's state.
struct Slot {
    provider: AuthProvider,
    /// What the hot path reads: a lock-free snapshot, replaced whole after each fetch.
    snapshot: ArcSwap<Snapshot>,
    /// Completed fetch attempts; a refetch that sees it change while waiting for the lock
    /// knows another fetch finished meanwhile and shares its result.
    attempts: AtomicU64,
    /// Held for the whole of a fetch: at most one fetch per provider is in flight.
    book: tokio::sync::Mutex<Book>,
    /// Counters read by the metrics page ([`JwksCache::stats`]).
    stats: Counters,
}

/// One provider's fetch counters: atomics, written once per fetch, read at scrape time.
#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Unix seconds of the last good fetch; 0 before the first.
    last_success_unix: AtomicU64,
    keys: AtomicU64,
}

/// What [`JwksCache::stats`] reports for one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderStats {
    pub provider: ProviderId,
    /// Fetch attempts (background refreshes and refetches), successful or not.
    pub fetches: u64,
    pub failures: u64,
    /// Unix seconds of the last good fetch; `None` before the first.
    pub last_success_unix: Option<u64>,
    /// Keys in the last good set (0 before the first).
    pub keys: u64,
}

struct Book {
    budget: RefetchBudget,
    backoff: Duration,
}

#[derive(Default)]
struct Snapshot {
    /// The last good set, kept when later fetches fail.
    keys: Option<Arc<KeySet>>,
    /// When `keys` was fetched.
    fetched_at: Option<Instant>,
    /// The error of the last attempt, `None` when it succeeded.
    last_error: Option<String>,
}

impl JwksCache {
    /// A cache for `providers`, nothing fetched yet: call [`JwksCache::start`]. Fails only
    /// when the HTTP client cannot be built (unreadable or empty `extra_ca`).
    pub fn new(
        providers: &[AuthProvider],
        settings: JwksSettings,
    ) -> Result<JwksCache, FetchError> {
        let fetcher = Fetcher::new(&settings)?;
        let slots = providers
            .iter()
            .map(|provider| {
                let running = Running::new(Slot::new(provider, &settings));
                (provider.id.clone(), running)
            })
            .collect();
        Ok(JwksCache {
            inner: Arc::new(Inner {
                settings,
                fetcher,
                slots,
            }),
        })
    }

    /// A cache for a new configuration's `providers` that keeps, for each provider whose id,
    /// issuer and `jwks_uri` are unchanged, this cache's state: its key set, counters, refetch
    /// budget and refresh task (nothing is fetched again). Changed and new providers start
    /// empty: call [`JwksCache::start`] on the result. Providers absent from `providers` are
    /// not in the result; their refresh tasks stop when this cache is dropped.
    pub fn reconfigure(&self, providers: &[AuthProvider]) -> JwksCache {
        let settings = &self.inner.settings;
        let slots = providers
            .iter()
            .map(|provider| {
                let running = match self.inner.slots.get(&provider.id) {
                    Some(old) if same_keys(&old.slot.provider, provider) => Arc::clone(old),
                    _ => Running::new(Slot::new(provider, settings)),
                };
                (provider.id.clone(), running)
            })
            .collect();
        JwksCache {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                fetcher: self.inner.fetcher.clone(),
                slots,
            }),
        }
    }

    /// Whether `other` holds the very same state as this cache for provider `id` (kept by
    /// [`JwksCache::reconfigure`]).
    pub fn shares_provider(&self, other: &JwksCache, id: &ProviderId) -> bool {
        match (self.inner.slots.get(id), other.inner.slots.get(id)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Spawns one refresh task per provider on the current tokio runtime and returns at once:
    /// the first fetches happen in the background. Providers whose task runs already (calling
    /// it again, or providers kept by [`JwksCache::reconfigure`]) are left alone.
    ///
    /// Each task fetches immediately, then again when 80% of `cache_duration` has passed
    /// since the last good fetch (a refetch counts), and after a failure retries with a
    /// backoff from `retry_initial` doubling up to `retry_max`.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn start(&self) {
        for running in self.inner.slots.values() {
            let mut task = running.task.lock().unwrap_or_else(PoisonError::into_inner);
            if task.is_none() {
                let slot = Arc::clone(&running.slot);
                let fetcher = self.inner.fetcher.clone();
                let settings = self.inner.settings.clone();
                *task = Some(tokio::spawn(refresh_loop(slot, fetcher, settings)));
            }
        }
    }

    /// Stops the refresh tasks. Key sets already fetched stay readable until they pass
    /// `max_stale`.
    pub fn stop(&self) {
        for running in self.inner.slots.values() {
            running.stop();
        }
    }

    /// Each provider's fetch counters, sorted by provider id.
    pub fn stats(&self) -> Vec<ProviderStats> {
        let mut all: Vec<ProviderStats> = self
            .inner
            .slots
            .iter()
            .map(|(id, running)| {
                let slot = &running.slot;
                let last = slot.stats.last_success_unix.load(Ordering::Relaxed);
                ProviderStats {
                    provider: id.clone(),
                    fetches: slot.stats.fetches.load(Ordering::Relaxed),
                    failures: slot.stats.failures.load(Ordering::Relaxed),
                    last_success_unix: (last > 0).then_some(last),
                    keys: slot.stats.keys.load(Ordering::Relaxed),
                }
            })
            .collect();
        all.sort_by(|a, b| a.provider.as_str().cmp(b.provider.as_str()));
        all
    }

    /// The providers whose keys have not been fetched successfully even once (readiness).
    pub fn never_fetched(&self) -> Vec<ProviderId> {
        let mut ids: Vec<ProviderId> = self
            .inner
            .slots
            .iter()
            .filter(|(_, running)| running.slot.snapshot.load().keys.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    }

    /// The settings in force.
    pub fn settings(&self) -> &JwksSettings {
        &self.inner.settings
    }

    /// The key set to verify `id`'s tokens with. Non-blocking and lock-free (an atomic load
    /// and a clock read): call it on every request.
    ///
    /// `Ready` while the last good set is younger than `cache_duration + max_stale`; after
    /// that, and before the first good fetch, `NotFetched` (fail closed). A provider that is
    /// not configured is `NotFetched` too, with an error saying so.
    pub fn state(&self, id: &ProviderId) -> CachedKeySet {
        let Some(Running { slot, .. }) = self.inner.slots.get(id).map(Arc::as_ref) else {
            return CachedKeySet::NotFetched {
                last_error: Some(format!("provider {id} is not configured")),
            };
        };
        let snapshot = slot.snapshot.load();
        match (&snapshot.keys, snapshot.fetched_at) {
            (Some(keys), Some(at)) => {
                let age = Instant::now().saturating_duration_since(at);
                if age <= self.inner.settings.usable_for() {
                    CachedKeySet::Ready(Arc::clone(keys))
                } else {
                    CachedKeySet::NotFetched {
                        last_error: Some(format!(
                            "last good key set is {}s old, past cache_duration + max_stale; last error: {}",
                            age.as_secs(),
                            snapshot.last_error.as_deref().unwrap_or("none")
                        )),
                    }
                }
            }
            _ => CachedKeySet::NotFetched {
                last_error: snapshot.last_error.clone(),
            },
        }
    }

    /// Refetches `id`'s key set now, for a token whose `kid` is not in the current set (`kid`
    /// `None`: a token without `kid`, or no key set yet); returns when the fetch is over, so the
    /// caller can read [`JwksCache::state`] again and retry verification on the same request.
    ///
    /// Single flight: at most one fetch per provider is in flight; callers arriving meanwhile
    /// wait for it, and share its result ([`Refetch::Joined`]) when it brought their `kid` or
    /// was for their `kid`. A caller whose `kid` that fetch did not bring fetches again (a key
    /// created after the other fetch was sent must still work on its first use).
    ///
    /// Bounds, per provider (background refreshes count against neither): a `kid` already
    /// refetched for is not refetched for again within `refetch_interval`
    /// ([`Refetch::RateLimited`]); and at most `refetch_limit` refetches run per
    /// `refetch_interval` whatever the `kid`s (a token bucket; [`Refetch::BudgetExhausted`]), so
    /// random `kid`s cannot make a fetch storm. A failed or unusable fetch keeps the last good
    /// set. The fetch runs in its own task, so a caller that gives up does not cancel it for
    /// the others.
    pub async fn refetch(&self, id: &ProviderId, kid: Option<&Kid>) -> Refetch {
        let Some(running) = self.inner.slots.get(id) else {
            return Refetch::UnknownProvider;
        };
        let slot = Arc::clone(&running.slot);
        let kid = kid.cloned();
        let seen = slot.attempts.load(Ordering::SeqCst);
        let fetcher = self.inner.fetcher.clone();
        let settings = self.inner.settings.clone();
        let task = tokio::spawn(async move {
            let mut book = slot.book.lock().await;
            let fetched_meanwhile = slot.attempts.load(Ordering::SeqCst) != seen;
            let has_kid = match &kid {
                Some(kid) => slot
                    .snapshot
                    .load()
                    .keys
                    .as_ref()
                    .is_some_and(|keys| keys.keys().iter().any(|key| key.kid() == Some(kid))),
                // Without a kid, any fetch that finished while we waited is as good as ours.
                None => fetched_meanwhile,
            };
            if has_kid {
                return Refetch::Joined;
            }
            match book.budget.decide(kid.as_ref(), Instant::now()) {
                RefetchDecision::Fetch => {}
                // Another caller's fetch for this same kid finished while we waited.
                RefetchDecision::KidRecent if fetched_meanwhile => return Refetch::Joined,
                RefetchDecision::KidRecent => {
                    tracing::debug!(provider = %slot.provider.id, kid = kid.as_ref().map(Kid::as_str), "refetch for this kid rate-limited");
                    return Refetch::RateLimited;
                }
                RefetchDecision::Exhausted => {
                    tracing::debug!(provider = %slot.provider.id, kid = kid.as_ref().map(Kid::as_str), "refetch budget of the provider exhausted");
                    return Refetch::BudgetExhausted;
                }
            }
            match slot
                .fetch_locked(&fetcher, &settings, &mut book, "refetch")
                .await
            {
                Ok(()) => Refetch::Fetched,
                Err(error) => Refetch::Failed { error },
            }
        });
        task.await.unwrap_or_else(|join| Refetch::Failed {
            error: format!("refetch task ended: {join}"),
        })
    }
}

impl Slot {
    fn new(provider: &AuthProvider, settings: &JwksSettings) -> Self {
        Slot {
            provider: provider.clone(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            attempts: AtomicU64::new(0),
            book: tokio::sync::Mutex::new(Book {
                budget: RefetchBudget::new(settings.refetch_interval, settings.refetch_limit),
                backoff: settings.retry_initial,
            }),
            stats: Counters::default(),
        }
    }

    /// Fetches and publishes the result; the caller holds `book` (the single flight).
    async fn fetch_locked(
        &self,
        fetcher: &Fetcher,
        settings: &JwksSettings,
        book: &mut Book,
        trigger: &'static str,
    ) -> Result<(), String> {
        let result = fetcher.fetch(&self.provider).await;
        let old = self.snapshot.load_full();
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(keys) => {
                book.backoff = settings.retry_initial;
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.stats.last_success_unix.store(unix, Ordering::Relaxed);
                self.stats
                    .keys
                    .store(keys.keys().len() as u64, Ordering::Relaxed);
                self.snapshot.store(Arc::new(Snapshot {
                    keys: Some(Arc::new(keys)),
                    fetched_at: Some(Instant::now()),
                    last_error: None,
                }));
                Ok(())
            }
            Err(error) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let text = error.chain();
                // The last good set stays (until `max_stale`): an outage or a bad publish
                // upstream must not turn into rejecting every token at once.
                let stale_for = old
                    .fetched_at
                    .map(|at| Instant::now().saturating_duration_since(at).as_secs());
                tracing::warn!(
                    provider = %self.provider.id,
                    trigger,
                    error = %text,
                    kind = error.variant_name(),
                    keeping_last_good_set = old.keys.is_some(),
                    last_good_age_s = stale_for,
                    "key set fetch failed"
                );
                self.snapshot.store(Arc::new(Snapshot {
                    keys: old.keys.clone(),
                    fetched_at: old.fetched_at,
                    last_error: Some(text.clone()),
                }));
                Err(text)
            }
        };
        self.attempts.fetch_add(1, Ordering::SeqCst);
        outcome
    }
}

/// A provider's background task: fetch, sleep until the refresh point or the retry, repeat.
async fn refresh_loop(slot: Arc<Slot>, fetcher: Fetcher, settings: JwksSettings) {
    let refresh_after = settings.refresh_after();
    loop {
        let wait = {
            let mut book = slot.book.lock().await;
            let snapshot = slot.snapshot.load_full();
            let now = Instant::now();
            match snapshot.fetched_at {
                // A refetch refreshed the set while we slept: move the refresh point.
                Some(at) if snapshot.last_error.is_none() && now < at + refresh_after => {
                    at + refresh_after - now
                }
                _ => match slot
                    .fetch_locked(&fetcher, &settings, &mut book, "background")
                    .await
                {
                    Ok(()) => refresh_after,
                    Err(_) => {
                        let wait = book.backoff;
                        book.backoff = (book.backoff * 2).min(settings.retry_max);
                        wait
                    }
                },
            }
        };
        tokio::time::sleep(wait.max(MIN_WAIT)).await;
    }
}
