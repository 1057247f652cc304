//! One connection's counters and what its driver does next ([`next_step`] decides).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ConnectionLimits;

/// Envoy's premature-reset rule (`ConnectionManagerImpl::maybeDrainDueToPrematureResets`): once
/// `closed` streams reach `limit`, close when at least half were premature resets; before that,
/// close as soon as premature resets reach half of `limit`, since the ratio can no longer recover.
pub fn too_many_premature_resets(closed: u64, premature: u64, limit: u64) -> bool {
    premature > 0 && premature.saturating_mul(2) >= closed.max(limit)
}

/// What a connection's counters are, as [`next_step`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub accepted_at: Instant,
    /// Requests (HTTP/1.1) or streams (HTTP/2) whose headers arrived, ever.
    pub requests: u64,
    /// Requests or streams not finished yet (response body not done or dropped).
    pub active: usize,
    /// When `active` last dropped to zero.
    pub idle_since: Instant,
    /// Set when the premature-reset rule tripped.
    pub abusive: bool,
}

/// What the connection's driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing until this instant (or a change of the counters).
    WaitUntil(Instant),
    /// Nothing until the counters change.
    Wait,
    /// Close at once: no request ever arrived in time.
    CloseNoRequest,
    /// GOAWAY (HTTP/2) or close after the current response (HTTP/1.1).
    GoAway(GoAwayReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoAwayReason {
    Idle,
    PrematureResets,
}

/// The decision, from the counters and the clock.
pub fn next_step(now: Instant, s: &Snapshot, limits: &ConnectionLimits) -> Step {
    if s.abusive {
        return Step::GoAway(GoAwayReason::PrematureResets);
    }
    if s.requests == 0 {
        let deadline = s.accepted_at + limits.request_header_timeout;
        return if now >= deadline {
            Step::CloseNoRequest
        } else {
            Step::WaitUntil(deadline)
        };
    }
    if s.active > 0 {
        return Step::Wait;
    }
    let deadline = s.idle_since + limits.idle_timeout;
    if now >= deadline {
        Step::GoAway(GoAwayReason::Idle)
    } else {
        Step::WaitUntil(deadline)
    }
}

#[derive(Debug)]
struct Counters {
    requests: u64,
    active: usize,
    idle_since: Instant,
    closed: u64,
    premature: u64,
    abusive: bool,
}

/// One connection's counters, shared by its streams and its driver.
#[derive(Debug)]
pub struct ConnState {
    pub(crate) limits: ConnectionLimits,
    accepted_at: Instant,
    counters: Mutex<Counters>,
    pub(crate) changed: Notify,
}

impl ConnState {
    /// Starts the clock of a connection accepted now.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            limits,
            accepted_at: now,
            counters: Mutex::new(Counters {
                requests: 0,
                active: 0,
                idle_since: now,
                closed: 0,
                premature: 0,
                abusive: false,
            }),
            changed: Notify::new(),
        })
    }

    /// When the request-header deadline of this connection passes (for a TLS handshake).
    pub fn first_request_deadline(&self) -> Instant {
        self.accepted_at + self.limits.request_header_timeout
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let c = self.counters();
        Snapshot {
            accepted_at: self.accepted_at,
            requests: c.requests,
            active: c.active,
            idle_since: c.idle_since,
            abusive: c.abusive,
        }
    }

    pub(crate) fn open_stream(self: &Arc<Self>) -> StreamGuard {
        let first = {
            let mut c = self.counters();
            c.requests += 1;
            c.active += 1;
            c.requests == 1
        };
        // Only changes that move the driver's next step sooner wake it: the first request (the
        // request-header deadline no longer applies) here, abuse in `close_stream`. Idleness
        // does not: while streams are open the driver looks again every idle timeout anyway,
        // which is before any idle deadline, and this runs on every call.
        if first {
            self.changed.notify_one();
        }
        StreamGuard {
            conn: self.clone(),
            opened_at: Instant::now(),
            completed: AtomicBool::new(false),
        }
    }

    fn close_stream(&self, opened_at: Instant, completed: bool) {
        let now = Instant::now();
        let premature = !completed
            && now.duration_since(opened_at) < self.limits.premature_reset_min_stream_lifetime;
        let tripped = {
            let mut c = self.counters();
            c.active = c.active.saturating_sub(1);
            if c.active == 0 {
                c.idle_since = now;
            }
            c.closed += 1;
            if premature {
                c.premature += 1;
            }
            let trip = !c.abusive
                && too_many_premature_resets(
                    c.closed,
                    c.premature,
                    self.limits.premature_reset_total_stream_count,
                );
            if trip {
                c.abusive = true;
            }
            trip.then_some((c.closed, c.premature))
        };
        if let Some((closed, premature)) = tripped {
            tracing::warn!(
                closed_streams = closed,
                premature_resets = premature,
                "too many streams reset by the client before their response; closing the connection"
            );
        }
        if tripped.is_some() {
            self.changed.notify_one();
        }
    }
}

/// One request or stream, from its headers until its response completed or was dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    conn: Arc<ConnState>,
    opened_at: Instant,
    completed: AtomicBool,
}

impl StreamGuard {
    pub(crate) fn complete(&self) {
        self.completed.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.conn
            .close_stream(self.opened_at, self.completed.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premature_reset_rule_is_envoys() {
        // Below the total: half the limit of premature resets trips it.
        assert!(!too_many_premature_resets(10, 10, 500));
        assert!(!too_many_premature_resets(249, 249, 500));
        assert!(too_many_premature_resets(250, 250, 500));
        // Past the total: the ratio.
        assert!(!too_many_premature_resets(1000, 499, 500));
        assert!(too_many_premature_resets(1000, 500, 500));
        // Well-behaved connections never trip it.
        assert!(!too_many_premature_resets(1_000_000, 0, 500));
    }

    #[test]
    fn steps() {
        let l = ConnectionLimits::default();
        let t0 = Instant::now();
        let fresh = Snapshot {
            accepted_at: t0,
            requests: 0,
            active: 0,
            idle_since: t0,
            abusive: false,
        };
        assert_eq!(
            next_step(t0, &fresh, &l),
            Step::WaitUntil(t0 + l.request_header_timeout)
        );
        assert_eq!(
            next_step(t0 + l.request_header_timeout, &fresh, &l),
            Step::CloseNoRequest
        );
        let busy = Snapshot {
            requests: 1,
            active: 1,
            ..fresh
        };
        assert_eq!(next_step(t0 + l.idle_timeout * 2, &busy, &l), Step::Wait);
        let idle = Snapshot {
            requests: 1,
            ..fresh
        };
        assert_eq!(
            next_step(t0 + l.idle_timeout, &idle, &l),
            Step::GoAway(GoAwayReason::Idle)
        );
        let abusive = Snapshot {
            abusive: true,
            ..busy
        };
        assert_eq!(
            next_step(t0, &abusive, &l),
            Step::GoAway(GoAwayReason::PrematureResets)
        );
    }
}
