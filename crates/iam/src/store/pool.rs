//! A bounded pool of store connections for the key server, so that lookups run side by side
//! instead of queueing behind one connection.
//!
//! Readers never block each other nor the writer (SQLite in WAL mode; PostgreSQL's MVCC), so
//! each lookup takes its own read-only connection, to the SQLite file or to PostgreSQL. The pool is
//! bounded twice: at most `size` connections (each opened on first need, then kept), and a
//! request waits at most `wait` for one before it fails with [`IamError::StoreBusy`] (the key
//! server answers 503): a flood of checks is answered, never left hanging.
//!
//! The pool hands out `&Store`, so what runs on a pooled connection is the store's read API,
//! whichever the backend.
//!
//! A key server runs for weeks while other processes may migrate its store: at most every
//! `schema_check` a lookup first reads the schema version again, and once a newer esprit has
//! migrated the store every lookup fails with [`IamError::StoreTooNew`] (the key server answers
//! 500) until this one is replaced by the newer version.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Store, StoreLocation};
use crate::{IamError, Result};

/// The most connections a pool may have (`--store-pool-size`).
pub const MAX_POOL_SIZE: usize = 256;

/// Bounds of a [`StorePool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// The most connections open at once (and lookups running at once). Default 8; 0 counts
    /// as 1, more than [`MAX_POOL_SIZE`] as [`MAX_POOL_SIZE`].
    pub size: usize,
    /// How long a lookup waits for a free connection before [`IamError::StoreBusy`]. Default
    /// 1 s, below the proxy's 2 s check timeout, so the proxy gets an answer (503) rather than
    /// a timeout.
    pub wait: Duration,
    /// How often a lookup reads the store's schema version again (a newer esprit may have
    /// migrated it). Default 10 s; zero checks before every lookup.
    pub schema_check: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            size: 8,
            wait: Duration::from_secs(1),
            schema_check: Duration::from_secs(10),
        }
    }
}

/// Read-only connections to one store. Share it as `Arc<StorePool>`.
#[derive(Debug)]
pub struct StorePool {
    location: StoreLocation,
    idle: Mutex<Vec<Store>>,
    permits: Arc<Semaphore>,
    wait: Duration,
    schema_check: Duration,
    /// When the schema version was last found known.
    checked: Mutex<Instant>,
}

impl StorePool {
    /// Opens the store at `location` (creating and migrating it as [`Store::open`] does,
    /// warning about loose file modes), then keeps up to `settings.size` read-only connections
    /// to it.
    pub fn open(
        location: impl Into<StoreLocation>,
        settings: PoolSettings,
    ) -> Result<Arc<StorePool>> {
        let location = location.into();
        // The migration needs a writer; it is closed afterwards (lookups never write).
        drop(Store::open(&location)?);
        let first = Store::open_reader(&location)?;
        let size = settings.size.clamp(1, MAX_POOL_SIZE);
        Ok(Arc::new(StorePool {
            location,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(size)),
            wait: settings.wait,
            schema_check: settings.schema_check,
            checked: Mutex::new(Instant::now()),
        }))
    }

    /// Where the store is.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// A read-only connection of its own, outside the pool and its bound: the readiness
    /// probe's ([`crate::readiness`]), which must not wait behind lookups.
    pub(crate) fn dedicated_reader(&self) -> Result<Store> {
        Store::open_reader(&self.location)
    }

    /// Runs `lookup` on a pooled connection on tokio's blocking threads and returns its
    /// result. Waits at most the pool's `wait` for a connection ([`IamError::StoreBusy`]).
    /// A connection whose lookup panicked is dropped, not returned to the pool.
    pub async fn with_store<T, F>(self: &Arc<Self>, lookup: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; treat it as busy all the same.
                Ok(Err(_)) | Err(_) => return Err(IamError::StoreBusy { waited: self.wait }),
            };
        let pool = Arc::clone(self);
        let ran = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let store = match pool.take_idle() {
                Some(store) => store,
                None => Store::open_reader(&pool.location)?,
            };
            let result = pool.check_schema(&store).and_then(|()| lookup(&store));
            pool.put_idle(store);
            result
        })
        .await;
        ran.unwrap_or_else(|join| Err(IamError::StoreWorker(join.to_string())))
    }

    /// Reads the schema version again when the last check is older than `schema_check`
    /// (the time is taken only once the version is found known, so a newer store is refused
    /// on every lookup).
    fn check_schema(&self, store: &Store) -> Result<()> {
        let due = {
            let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            checked.elapsed() >= self.schema_check
        };
        if due {
            store.refuse_newer_schema()?;
            *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        Ok(())
    }

    fn take_idle(&self) -> Option<Store> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, store: Store) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
    }
}
