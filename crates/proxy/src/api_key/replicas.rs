//! Which key-server replica a check asks, and when a failing replica is ejected or readmitted:
//! pure decisions over the replicas' recent outcomes and a `now` passed in (no I/O, no clock).
//!
//! - Spreading: round robin over the replicas not ejected. Each check starts one step further
//!   along that list and, on failure, moves on to the next, each replica at most once. Round
//!   robin rather than power-of-two-choices: a proxy's checks are few and short (answers are
//!   cached), so in-flight counts carry little signal, and a fixed order keeps the behaviour
//!   predictable and testable.
//! - Passive ejection (Envoy's outlier detection, consecutive-failure kind): a replica whose
//!   last [`EjectionPolicy::consecutive_failures`] attempts all failed (connect error, attempt
//!   timeout, 5xx, broken answer) is left out for [`EjectionPolicy::base_ejection`], doubled at
//!   each further ejection up to [`EjectionPolicy::max_ejection`]. Readmission is the end of
//!   that time; any answer from the replica (a verdict, or a 4xx) resets both its failure count
//!   and its back-off.
//! - When every replica is ejected, a check still asks them, least recently ejected first (its
//!   last failure is the oldest), each at most once, rather than failing without trying (Envoy's
//!   panic mode). Asking only the oldest would keep refusing every check while that one stays
//!   dead, even once another is back (a key server killed, then the store restarted under the
//!   other: 5xx from it until the restart ends, then its ejection's whole time refused).
//! - Budget: each attempt may take an equal share of what is left of the check's timeout among
//!   the attempts still planned ([`attempt_timeout`]), so a replica that never answers cannot
//!   use up the time the others need. With one replica, the attempt has the whole timeout.

use std::time::{Duration, SystemTime};

/// When a failing replica is ejected, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Consecutive failed attempts that eject a replica (at least 1).
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further one (without an answer in between)
    /// lasts twice the previous.
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    pub max_ejection: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

impl EjectionPolicy {
    /// The length of the `nth` ejection (1-based) in a row.
    pub(crate) fn ejection_time(&self, nth: u32) -> Duration {
        let doublings = nth.saturating_sub(1).min(31);
        self.base_ejection
            .saturating_mul(1u32 << doublings)
            .min(self.max_ejection)
    }
}

/// What one attempt at one replica came to, as far as the replica's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// The replica answered (a verdict, or a 4xx refusal): it is up.
    Answered,
    /// Connect error, attempt timeout, 5xx, or an answer cut short.
    Failed,
}

/// What recording an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// This failure ejected the replica until then.
    Ejected {
        until: SystemTime,
    },
    /// An answer from a replica that was ejected (tried because every replica was) readmitted it.
    Readmitted,
}

#[derive(Debug, Clone, Copy)]
struct Ejection {
    at: SystemTime,
    until: SystemTime,
}

#[derive(Debug, Clone, Default)]
struct ReplicaState {
    consecutive_failures: u32,
    /// Ejections since the last answer: the next one lasts `ejection_time(ejections + 1)`.
    ejections: u32,
    ejected: Option<Ejection>,
}

impl ReplicaState {
    fn is_ejected(&self, now: SystemTime) -> bool {
        self.ejected.is_some_and(|e| now < e.until)
    }
}

/// The replicas' health, indexed like the configured URLs (`0..len`).
#[derive(Debug)]
pub(crate) struct Replicas {
    states: Vec<ReplicaState>,
    policy: EjectionPolicy,
    /// Round-robin position among the replicas not ejected.
    cursor: usize,
}

impl Replicas {
    /// `count` replicas (at least one), all admitted.
    pub(crate) fn new(count: usize, policy: EjectionPolicy) -> Self {
        Self {
            states: vec![ReplicaState::default(); count.max(1)],
            policy,
            cursor: 0,
        }
    }

    /// The replicas one check may ask, in order: those not ejected, starting one step further
    /// along than the previous check; when all are ejected, all of them, least recently ejected
    /// first.
    pub(crate) fn plan(&mut self, now: SystemTime) -> Vec<usize> {
        let admitted: Vec<usize> = (0..self.states.len())
            .filter(|&i| !self.states[i].is_ejected(now))
            .collect();
        if admitted.is_empty() {
            let mut all: Vec<usize> = (0..self.states.len()).collect();
            all.sort_by_key(|&i| self.states[i].ejected.map(|e| e.at));
            return all;
        }
        let start = self.cursor % admitted.len();
        self.cursor = self.cursor.wrapping_add(1);
        admitted[start..]
            .iter()
            .chain(&admitted[..start])
            .copied()
            .collect()
    }

    /// Records one attempt's outcome at replica `index`.
    pub(crate) fn record(&mut self, index: usize, health: Health, now: SystemTime) -> Transition {
        let policy = self.policy;
        let Some(state) = self.states.get_mut(index) else {
            return Transition::None;
        };
        match health {
            Health::Answered => {
                let was_ejected = state.is_ejected(now);
                *state = ReplicaState::default();
                if was_ejected {
                    Transition::Readmitted
                } else {
                    Transition::None
                }
            }
            // Already out (an attempt begun before the ejection, or the last-resort try): the
            // ejection stands as it is.
            Health::Failed if state.is_ejected(now) => Transition::None,
            Health::Failed => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                if state.consecutive_failures < policy.consecutive_failures.max(1) {
                    return Transition::None;
                }
                state.consecutive_failures = 0;
                state.ejections = state.ejections.saturating_add(1);
                let until = now + policy.ejection_time(state.ejections);
                state.ejected = Some(Ejection { at: now, until });
                Transition::Ejected { until }
            }
        }
    }

    /// Replicas ejected at `now`.
    pub(crate) fn ejected(&self, now: SystemTime) -> usize {
        self.states.iter().filter(|s| s.is_ejected(now)).count()
    }
}

/// How long the next attempt may take: an equal share of the check's `remaining` time among
/// the `attempts_left` attempts still planned (this one included).
pub(crate) fn attempt_timeout(remaining: Duration, attempts_left: usize) -> Duration {
    let share = u32::try_from(attempts_left.max(1)).unwrap_or(u32::MAX);
    remaining / share
}

#[cfg(test)]
mod tests;
