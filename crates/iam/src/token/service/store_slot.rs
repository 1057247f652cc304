//! The service's one read-write store connection, lent to one call at a time.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::store::Store;
use crate::{IamError, Result};

/// The longest a call waits for the service's store connection before [`IamError::StoreBusy`].
pub const STORE_WAIT: Duration = Duration::from_secs(2);

/// The service's one read-write store connection, lent to one call at a time; a call waits at
/// most [`STORE_WAIT`] for it (the bounded writer path of `iam serve`, beside the read-only pool).
pub(super) struct StoreSlot {
    store: Mutex<Store>,
    busy: Mutex<bool>,
    free: Condvar,
}

/// The connection, lent until dropped.
pub(super) struct Lent<'a> {
    slot: &'a StoreSlot,
    store: MutexGuard<'a, Store>,
}

impl StoreSlot {
    pub(super) fn new(store: Store) -> StoreSlot {
        StoreSlot {
            store: Mutex::new(store),
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    pub(super) fn lend(&self) -> Result<Lent<'_>> {
        let deadline = Instant::now() + STORE_WAIT;
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IamError::StoreBusy { waited: STORE_WAIT });
            }
            busy = self
                .free
                .wait_timeout(busy, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *busy = true;
        drop(busy);
        Ok(Lent {
            slot: self,
            store: self.store.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        // Also on a panic of the borrower: the slot is never left busy.
        *self
            .slot
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.slot.free.notify_one();
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_store_connection_is_lent_to_one_call_at_a_time_and_waits_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let slot = StoreSlot::new(Store::open(dir.path().join("iam.db")).unwrap());
        let held = slot.lend().unwrap();
        let started = Instant::now();
        let waited = std::thread::scope(|s| s.spawn(|| slot.lend().map(|_| ())).join().unwrap());
        assert!(
            matches!(waited, Err(IamError::StoreBusy { .. })),
            "{waited:?}"
        );
        assert!(started.elapsed() >= STORE_WAIT);
        // A waiter gets it as soon as it is returned.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slot.lend().map(|_| ()));
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            waiter.join().unwrap().unwrap();
        });
        // A borrower that panics returns it too.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lent = slot.lend().unwrap();
            panic!("borrower fails");
        }));
        assert!(panicked.is_err());
        let started = Instant::now();
        slot.lend().unwrap();
        assert!(started.elapsed() < STORE_WAIT);
    }
}
