//! Can the key server reach its store? The store check of `iam serve`'s `/readyz`.
//!
//! A background task ([`StoreProbe::spawn`]) asks the store for its schema version — one cheap
//! query — every [`ProbeSettings::interval`] on a read-only connection of its own (outside the
//! lookup pool, so a busy pool does not make a replica unready, and a probe never waits behind
//! lookups), waits at most [`ProbeSettings::timeout`] for the answer and keeps the verdict.
//! `/readyz` reads that verdict ([`StoreProbe::state`]): a probe of the load balancer costs no
//! query, and the answer is at most one interval (plus the timeout) old.
//!
//! A probe that does not answer in time is abandoned with its connection (the next one opens a
//! new connection: an established connection can hang where a new one would fail at once), and
//! at most [`MAX_ABANDONED`] abandoned probes may still be running at once: past that no new
//! probe starts until one ends, so a store that hangs costs a bounded number of threads.
//!
//! What it deliberately does not do: decide whether the key server is alive (`/healthz`: a
//! store outage must take a replica out of the load balancer, not get it restarted), retry, or
//! look at anything but reachability and the schema version.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{SCHEMA_VERSION, Store, StorePool};
use crate::{IamError, Result};

/// Abandoned probes (no answer within the timeout) that may still be running at once.
pub const MAX_ABANDONED: usize = 4;

/// How often and how patiently the store is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between the starts of two probes. Default 1 s.
    pub interval: Duration,
    /// How long a probe's answer is awaited before the store counts as unreachable. Default
    /// 2 s: a store that answers needs milliseconds.
    pub timeout: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The last probe's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// No probe has answered yet.
    Starting,
    /// The store answered, with a schema this esprit reads.
    Reachable,
    /// Why the store cannot be used now, for `/readyz` (names the store as its messages do,
    /// without a password).
    Unusable(String),
}

impl StoreState {
    /// `None` when ready; else why not.
    pub fn failing(&self) -> Option<String> {
        match self {
            StoreState::Reachable => None,
            StoreState::Starting => Some("the store has not been probed yet".into()),
            StoreState::Unusable(why) => Some(why.clone()),
        }
    }
}

/// The verdict on a probe's answer: the schema version read, or why none was.
pub(crate) fn verdict(answer: Result<i64>) -> StoreState {
    match answer {
        // Another esprit migrated the store past what this one reads: it would misread it.
        Ok(found) if found > SCHEMA_VERSION => StoreState::Unusable(
            IamError::StoreTooNew {
                found,
                supported: SCHEMA_VERSION,
            }
            .to_string(),
        ),
        Ok(_) => StoreState::Reachable,
        Err(err) => StoreState::Unusable(describe(&err)),
    }
}

/// `err` and its first cause (the driver's words: "Connection refused", "db error: …").
fn describe(err: &IamError) -> String {
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// The probe's task and its last verdict; the task stops when this is dropped.
#[derive(Debug)]
pub struct StoreProbe {
    state: watch::Receiver<StoreState>,
    task: tokio::task::JoinHandle<()>,
}

impl StoreProbe {
    /// Starts probing the store of `pool` on the current tokio runtime (the first probe at
    /// once).
    pub fn spawn(pool: Arc<StorePool>, settings: ProbeSettings) -> StoreProbe {
        let (tx, state) = watch::channel(StoreState::Starting);
        let task = tokio::spawn(run(pool, settings, tx));
        StoreProbe { state, task }
    }

    /// Waits (at most the probe's timeout and a little) for the first verdict, so that a
    /// server whose store answers is ready as soon as its admin listener is up.
    pub async fn first_verdict(&mut self, settings: &ProbeSettings) -> StoreState {
        let wait = settings.timeout + Duration::from_millis(100);
        let _ = tokio::time::timeout(
            wait,
            self.state.wait_for(|state| *state != StoreState::Starting),
        )
        .await;
        self.state()
    }

    /// The last verdict.
    pub fn state(&self) -> StoreState {
        self.state.borrow().clone()
    }
}

impl Drop for StoreProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a probe as running until dropped (also when its thread panics).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::SeqCst);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn run(pool: Arc<StorePool>, settings: ProbeSettings, tx: watch::Sender<StoreState>) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let running = Arc::new(AtomicUsize::new(0));
    // The probe's connection, between probes; `None` until opened, and after a timeout.
    let mut connection: Option<Store> = None;
    loop {
        ticks.tick().await;
        let abandoned = running.load(Ordering::SeqCst);
        if abandoned >= MAX_ABANDONED {
            tx.send_replace(StoreState::Unusable(format!(
                "the store has not answered the last {abandoned} probes"
            )));
            continue;
        }
        let taken = connection.take();
        let probe_pool = pool.clone();
        let guard = Running::start(&running);
        let probe = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let store = match taken {
                Some(store) => store,
                None => probe_pool.dedicated_reader()?,
            };
            // A connection the server ended is made again by the store at its next use.
            let answer = store.schema_version();
            Ok::<_, IamError>((store, answer))
        });
        let state = match tokio::time::timeout(settings.timeout, probe).await {
            Ok(Ok(Ok((store, answer)))) => {
                connection = Some(store);
                verdict(answer)
            }
            Ok(Ok(Err(open))) => verdict(Err(open)),
            Ok(Err(join)) => StoreState::Unusable(format!("the store probe failed: {join}")),
            Err(_) => StoreState::Unusable(format!(
                "the store did not answer within {:?}",
                settings.timeout
            )),
        };
        if *tx.borrow() != state {
            match state.failing() {
                None => tracing::info!("store reachable: ready"),
                Some(ref why) => tracing::warn!(reason = %why, "store unusable: not ready"),
            }
        }
        tx.send_replace(state);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(Ok(SCHEMA_VERSION)), StoreState::Reachable);
        // Older is fine for a reader: `iam serve` migrated at start, and a lagging read
        // replica is still the store.
        assert_eq!(verdict(Ok(SCHEMA_VERSION - 1)), StoreState::Reachable);
        let newer = verdict(Ok(SCHEMA_VERSION + 1));
        assert_eq!(
            newer.failing().unwrap(),
            format!(
                "the IAM store has schema version {}, newer than this esprit supports ({SCHEMA_VERSION})",
                SCHEMA_VERSION + 1
            )
        );
        let gone = verdict(Err(IamError::StoreGone));
        assert_eq!(
            gone.failing().unwrap(),
            "the connection to the IAM store ended"
        );
        assert!(StoreState::Starting.failing().is_some());
        assert_eq!(StoreState::Reachable.failing(), None);
    }
}
