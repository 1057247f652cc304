//! `clock`: the wall clock esprit's servers read, as a value that can be replaced.
//!
//! Decisions never read a clock (they take `now` as an argument); the edges that call them read
//! it through a [`Clock`], so that a test can hand the server a [`ManualClock`] and move time
//! forward instead of sleeping past an expiry. Production code uses [`SystemClock`].
//!
//! Only wall time lives here (token `iat`/`exp`, key rotation dates, cache lifetimes compared
//! with token times). Timers that merely wait (`tokio::time::sleep`, timeouts) use tokio's clock,
//! which tests pause and advance with `tokio::time::pause`/`advance`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time in whole seconds since the Unix epoch (0 for a clock set before 1970).
    fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A shared clock, as servers hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: clones share one time.
///
/// Resolution is one millisecond.
#[derive(Clone, Debug)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        let millis = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        ManualClock {
            millis: Arc::new(AtomicU64::new(millis)),
        }
    }

    /// A clock showing the system's time now (then frozen).
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `to` (which may be earlier: a clock stepped back).
    pub fn set(&self, to: SystemTime) {
        let millis = to
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.millis.store(millis, Ordering::SeqCst);
    }

    /// This clock as a [`SharedClock`] (sharing its time with `self`).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = ManualClock::new(start);
        let shared = clock.shared();
        assert_eq!(shared.now(), start);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(shared.now(), start + Duration::from_millis(1_500));
        assert_eq!(shared.unix_secs(), 1_800_000_001);
        clock.set(start);
        assert_eq!(shared.unix_secs(), 1_800_000_000);
    }

    #[test]
    fn system_clock_is_close_to_the_real_time() {
        let before = SystemTime::now();
        let read = SystemClock.now();
        assert!(read >= before);
        assert!(
            system().unix_secs() >= before.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
        );
    }
}
