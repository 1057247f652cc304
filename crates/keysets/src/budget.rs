//! Which unknown-`kid` refetches of one provider may run: a pure decision, the clock passed in.
//!
//! Two bounds, both per provider:
//! - per `kid`: a `kid` that was already refetched for is not refetched for again within
//!   `refetch_interval` (a bogus `kid` costs one fetch, then nothing);
//! - global: a token bucket of `refetch_limit` tokens, refilled at `refetch_limit` per
//!   `refetch_interval`, so a flood of random `kid`s costs at most `refetch_limit` fetches at
//!   once and `refetch_limit` per interval after that.
//!
//! A token without `kid` (or a provider with no key set yet) counts as the `kid` `None`.

use std::collections::HashMap;
use std::time::Duration;

use jose::Kid;
use tokio::time::Instant;

/// What [`RefetchBudget::decide`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefetchDecision {
    /// Fetch now; the `kid` and the spent token are recorded.
    Fetch,
    /// This `kid` was refetched for less than `refetch_interval` ago.
    KidRecent,
    /// The provider's bucket is empty.
    Exhausted,
}

/// The per-provider refetch bookkeeping. Its memory is bounded by the bucket: a `kid` is
/// recorded only when a token is spent, and records older than the interval are dropped, so
/// at most `2 * limit` are held.
#[derive(Debug)]
pub(crate) struct RefetchBudget {
    interval: Duration,
    limit: u32,
    tokens: u32,
    /// When the bucket last gained a token (or was last full).
    refilled_at: Option<Instant>,
    recent: HashMap<Option<Kid>, Instant>,
}

impl RefetchBudget {
    /// A full bucket of `limit` tokens (at least 1).
    pub(crate) fn new(interval: Duration, limit: u32) -> RefetchBudget {
        let limit = limit.max(1);
        RefetchBudget {
            interval,
            limit,
            tokens: limit,
            refilled_at: None,
            recent: HashMap::new(),
        }
    }

    /// May a refetch for `kid` run at `now`? Records it when it may.
    pub(crate) fn decide(&mut self, kid: Option<&Kid>, now: Instant) -> RefetchDecision {
        self.refill(now);
        let interval = self.interval;
        self.recent
            .retain(|_, at| now.saturating_duration_since(*at) < interval);
        let key = kid.cloned();
        if self.recent.contains_key(&key) {
            return RefetchDecision::KidRecent;
        }
        if self.tokens == 0 {
            return RefetchDecision::Exhausted;
        }
        self.tokens -= 1;
        self.refilled_at.get_or_insert(now);
        self.recent.insert(key, now);
        RefetchDecision::Fetch
    }

    /// How many `kid`s are remembered (for tests of the memory bound).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.recent.len()
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= self.limit {
            self.refilled_at = None;
            return;
        }
        // One token per `interval / limit`; an interval of zero means no global bound.
        let per_token = self.interval / self.limit;
        if per_token.is_zero() {
            self.tokens = self.limit;
            self.refilled_at = None;
            return;
        }
        let Some(since) = self.refilled_at else {
            self.refilled_at = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        let gained = elapsed.as_nanos() / per_token.as_nanos();
        if gained == 0 {
            return;
        }
        let gained = u32::try_from(gained).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(gained).min(self.limit);
        self.refilled_at = if self.tokens >= self.limit {
            None
        } else {
            Some(since + per_token * gained)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn kid(s: &str) -> Kid {
        Kid::from(s)
    }

    #[test]
    fn each_new_kid_fetches_once_per_interval() {
        let t0 = Instant::now();
        let mut b = RefetchBudget::new(30 * SEC, 5);
        assert_eq!(b.decide(Some(&kid("bogus")), t0), RefetchDecision::Fetch);
        assert_eq!(
            b.decide(Some(&kid("bogus")), t0 + SEC),
            RefetchDecision::KidRecent
        );
        // The bogus kid does not block a different, new kid.
        assert_eq!(
            b.decide(Some(&kid("new")), t0 + SEC),
            RefetchDecision::Fetch
        );
        assert_eq!(b.decide(None, t0 + SEC), RefetchDecision::Fetch);
        assert_eq!(b.decide(None, t0 + 2 * SEC), RefetchDecision::KidRecent);
        // After the interval the same kid may be fetched for again.
        assert_eq!(
            b.decide(Some(&kid("bogus")), t0 + 31 * SEC),
            RefetchDecision::Fetch
        );
    }

    #[test]
    fn the_bucket_bounds_random_kids() {
        let t0 = Instant::now();
        let mut b = RefetchBudget::new(30 * SEC, 5);
        let mut fetched = 0;
        // 1000 distinct kids within one second: only the bucket's 5.
        for i in 0..1000 {
            if b.decide(Some(&kid(&format!("k{i}"))), t0 + SEC * i / 1000) == RefetchDecision::Fetch
            {
                fetched += 1;
            }
        }
        assert_eq!(fetched, 5);
        // One token per 6 s comes back.
        assert_eq!(
            b.decide(Some(&kid("x")), t0 + 5 * SEC),
            RefetchDecision::Exhausted
        );
        assert_eq!(
            b.decide(Some(&kid("x")), t0 + 6 * SEC),
            RefetchDecision::Fetch
        );
        assert_eq!(
            b.decide(Some(&kid("y")), t0 + 7 * SEC),
            RefetchDecision::Exhausted
        );
        // Over a long flood, at most limit per interval (plus the initial burst).
        let mut fetched = 0;
        for i in 0..6000u32 {
            let now = t0 + 10 * SEC + Duration::from_millis(50) * i; // 300 s
            if b.decide(Some(&kid(&format!("f{i}"))), now) == RefetchDecision::Fetch {
                fetched += 1;
            }
            assert!(b.remembered() <= 10, "memory bounded by the bucket");
        }
        assert!(fetched <= 5 + 5 * 10, "{fetched}");
        assert!(fetched >= 45, "the bucket refills: {fetched}");
    }

    #[test]
    fn a_zero_interval_is_unbounded() {
        let t0 = Instant::now();
        let mut b = RefetchBudget::new(Duration::ZERO, 1);
        for _ in 0..10 {
            assert_eq!(b.decide(Some(&kid("a")), t0), RefetchDecision::Fetch);
        }
    }
}
