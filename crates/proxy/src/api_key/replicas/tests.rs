#![allow(clippy::unwrap_used)]
use super::*;

use clock::{Clock, ManualClock};

const NOW: SystemTime = SystemTime::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    NOW + Duration::from_secs(secs)
}

fn policy() -> EjectionPolicy {
    EjectionPolicy::default()
}

#[test]
fn defaults_are_three_failures_ten_seconds_doubling_to_five_minutes() {
    let p = policy();
    let table = [
        (1, 10),
        (2, 20),
        (3, 40),
        (4, 80),
        (5, 160),
        (6, 300),
        (7, 300),
    ];
    for (nth, secs) in table {
        assert_eq!(
            p.ejection_time(nth),
            Duration::from_secs(secs),
            "ejection {nth}"
        );
    }
    // No overflow however many ejections in a row.
    assert_eq!(p.ejection_time(u32::MAX), Duration::from_secs(300));
    assert_eq!(p.consecutive_failures, 3);
}

#[test]
fn round_robin_over_every_replica_each_check_starting_one_further() {
    let mut r = Replicas::new(3, policy());
    let plans: Vec<Vec<usize>> = (0..4).map(|_| r.plan(NOW)).collect();
    assert_eq!(
        plans,
        [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
    );
}

#[test]
fn one_replica_is_always_the_whole_plan() {
    let mut r = Replicas::new(1, policy());
    for i in 0..10 {
        assert_eq!(r.plan(at(i)), [0]);
        r.record(0, Health::Failed, at(i));
    }
}

#[test]
fn three_consecutive_failures_eject_and_an_answer_in_between_resets_the_count() {
    // (outcome at replica 0, transition expected), one second apart.
    use Health::*;
    let table: &[(Health, bool)] = &[
        (Failed, false),
        (Failed, false),
        (Answered, false),
        (Failed, false),
        (Failed, false),
        (Failed, true),
    ];
    let mut r = Replicas::new(2, policy());
    for (i, (health, ejects)) in table.iter().enumerate() {
        let now = at(i as u64);
        let transition = r.record(0, *health, now);
        assert_eq!(
            transition,
            if *ejects {
                Transition::Ejected {
                    until: now + Duration::from_secs(10),
                }
            } else {
                Transition::None
            },
            "step {i}"
        );
    }
    assert_eq!(r.ejected(at(5)), 1);
}

#[test]
fn an_ejected_replica_is_left_out_until_its_time_is_up() {
    let mut r = Replicas::new(3, policy());
    for _ in 0..3 {
        r.record(1, Health::Failed, NOW);
    }
    for i in 0..6 {
        let plan = r.plan(at(i));
        assert!(!plan.contains(&1), "{plan:?}");
        assert_eq!(plan.len(), 2);
    }
    // Spread evenly over the two left.
    let firsts: Vec<usize> = (0..4).map(|_| r.plan(at(9))[0]).collect();
    assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 2, "{firsts:?}");
    // Ten seconds on, readmitted without anything recorded.
    assert_eq!(r.ejected(at(9)), 1);
    assert_eq!(r.ejected(at(10)), 0);
    assert!(r.plan(at(10)).contains(&1));
}

#[test]
fn back_off_doubles_while_failing_and_resets_on_an_answer() {
    let mut r = Replicas::new(2, policy());
    let mut now = NOW;
    let eject = |r: &mut Replicas, now: SystemTime| {
        let mut last = Transition::None;
        for _ in 0..3 {
            last = r.record(0, Health::Failed, now);
        }
        match last {
            Transition::Ejected { until } => until.duration_since(now).unwrap().as_secs(),
            other => panic!("not ejected: {other:?}"),
        }
    };
    for want in [10, 20, 40, 80, 160, 300, 300] {
        assert_eq!(eject(&mut r, now), want);
        now += Duration::from_secs(want);
        assert_eq!(r.ejected(now), 0, "readmitted after {want}s");
    }
    assert_eq!(r.record(0, Health::Answered, now), Transition::None);
    assert_eq!(eject(&mut r, now), 10, "an answer resets the back-off");
}

#[test]
fn failures_while_ejected_do_not_extend_the_ejection() {
    let mut r = Replicas::new(2, policy());
    for _ in 0..3 {
        r.record(0, Health::Failed, NOW);
    }
    // Late failures of attempts begun before the ejection.
    for _ in 0..10 {
        assert_eq!(r.record(0, Health::Failed, at(1)), Transition::None);
    }
    assert_eq!(r.ejected(at(10)), 0);
}

#[test]
fn when_every_replica_is_ejected_all_are_still_tried_least_recently_ejected_first() {
    let mut r = Replicas::new(3, policy());
    for (replica, when) in [(2, 0), (0, 1), (1, 2)] {
        for _ in 0..3 {
            r.record(replica, Health::Failed, at(when));
        }
    }
    assert_eq!(r.ejected(at(3)), 3);
    // Each at most once: when the oldest is still down, the check fails over to the others.
    assert_eq!(r.plan(at(3)), [2, 0, 1]);
    assert_eq!(r.plan(at(4)), [2, 0, 1]);
    // A failure of the last-resort attempts does not extend or reorder the ejections.
    assert_eq!(r.record(2, Health::Failed, at(4)), Transition::None);
    assert_eq!(r.plan(at(4)), [2, 0, 1]);
    // It answers: readmitted at once, with a fresh back-off.
    assert_eq!(r.record(2, Health::Answered, at(5)), Transition::Readmitted);
    assert_eq!(r.ejected(at(5)), 2);
    assert_eq!(r.plan(at(5)), [2]);
    // Replica 0's ejection ends at 11 s.
    assert_eq!(r.plan(at(11)).len(), 2);
}

#[test]
fn the_budget_is_shared_among_the_attempts_left() {
    let ms = Duration::from_millis;
    let table = [
        (ms(2000), 1, ms(2000)),
        (ms(2000), 2, ms(1000)),
        (ms(2000), 3, ms(666)),
        (ms(900), 2, ms(450)),
        (ms(0), 2, ms(0)),
        (ms(2000), 0, ms(2000)),
    ];
    for (remaining, left, want) in table {
        let got = attempt_timeout(remaining, left);
        assert!(
            got.abs_diff(want) < ms(1),
            "{remaining:?}/{left}: {got:?}, want {want:?}"
        );
    }
}

/// The decisions read time only through `now`: driven by a `ManualClock`, as the checker does.
#[test]
fn driven_by_a_manual_clock() {
    let clock = ManualClock::new(at(1_800_000_000));
    let mut r = Replicas::new(2, policy());
    for _ in 0..3 {
        r.record(0, Health::Failed, clock.now());
    }
    assert_eq!(r.plan(clock.now()), [1]);
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(r.plan(clock.now()), [1]);
    clock.advance(Duration::from_millis(1));
    assert_eq!(r.plan(clock.now()).len(), 2);
}
