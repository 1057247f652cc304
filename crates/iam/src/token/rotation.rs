//! The token service's signing-key schedule, as a pure function of (keys, now, policy).
//!
//! Every token-service key has a window: it signs in `[sign_from, sign_until)` and is published
//! until `publish_until`. The plan keeps three promises:
//! - a key is published at least [`RotationPolicy::publish_ahead`] (the certificates'
//!   `Cache-Control` max-age plus a margin) before it signs, so a verifier that cached the key
//!   documents just before the key appeared still knows it when the first token arrives;
//! - a key stays published until every token it signed has expired, plus a margin
//!   (`publish_until = sign_until + token lifetime + retire margin`);
//! - exactly one key signs at any time (the one with the latest `sign_from` among those whose
//!   window holds `now`).
//!
//! The successor of the signing key is created once `now + publish_ahead` reaches the end of the
//! signing window; if the service was not running then, the current key's window is extended
//! until the successor has been published long enough. With no key able to sign (a new store, or
//! a store untouched for longer than a window), a key is made that signs at once: no verifier can
//! hold an older copy of the key documents that would miss it for long, as verifiers refetch on
//! an unknown `kid`.

/// When a key signs and how long it is published, seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyWindow {
    /// First second the key signs.
    pub sign_from: u64,
    /// The key signs before this second.
    pub sign_until: u64,
    /// The key is published before this second; the row is deleted from then on.
    pub publish_until: u64,
}

/// A token-service key as the schedule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledKey {
    /// The key id (`kid`).
    pub key_id: String,
    /// Its window.
    pub window: KeyWindow,
}

/// The schedule's parameters, seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long one key signs (`--signing-key-rotation`).
    pub rotation: u64,
    /// How long before it signs a key is published.
    pub publish_ahead: u64,
    /// The longest lifetime of a token the keys sign.
    pub token_lifetime: u64,
    /// Extra time a key stays published after its last token expired (verifiers' clock skew).
    pub retire_margin: u64,
}

impl RotationPolicy {
    /// The window of a key that starts signing at `sign_from`.
    pub fn window_from(&self, sign_from: u64) -> KeyWindow {
        let sign_until = sign_from.saturating_add(self.rotation);
        KeyWindow {
            sign_from,
            sign_until,
            publish_until: self.publish_until(sign_until),
        }
    }

    fn publish_until(&self, sign_until: u64) -> u64 {
        sign_until
            .saturating_add(self.token_lifetime)
            .saturating_add(self.retire_margin)
    }
}

/// The writes that bring the keys up to date at `now`. Empty when nothing is to be done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationPlan {
    /// Make a new key with this window.
    pub create: Option<KeyWindow>,
    /// Give an existing key this window (the signing key, extended until its successor may sign).
    pub extend: Option<(String, KeyWindow)>,
    /// Delete these keys: every token they signed has expired.
    pub retire: Vec<String>,
}

impl RotationPlan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_none() && self.extend.is_none() && self.retire.is_empty()
    }
}

/// The key that signs at `now`: among keys whose window holds `now`, the latest to start.
pub fn signing_key(keys: &[ScheduledKey], now: u64) -> Option<&ScheduledKey> {
    keys.iter()
        .filter(|k| k.window.sign_from <= now && now < k.window.sign_until)
        .max_by_key(|k| (k.window.sign_from, k.key_id.as_str()))
}

/// The keys published at `now` (those that sign, will sign, or signed tokens that may still be
/// valid), by `sign_from`.
pub fn published_keys(keys: &[ScheduledKey], now: u64) -> Vec<&ScheduledKey> {
    let mut published: Vec<&ScheduledKey> = keys
        .iter()
        .filter(|k| now < k.window.publish_until)
        .collect();
    published.sort_by_key(|k| (k.window.sign_from, k.key_id.as_str()));
    published
}

/// What to write so that a key signs at `now` and its successor is published in time.
pub fn plan_rotation(keys: &[ScheduledKey], now: u64, policy: &RotationPolicy) -> RotationPlan {
    let retire = keys
        .iter()
        .filter(|k| k.window.publish_until <= now)
        .map(|k| k.key_id.clone())
        .collect();
    let live: Vec<ScheduledKey> = keys
        .iter()
        .filter(|k| now < k.window.publish_until)
        .cloned()
        .collect();
    let mut plan = RotationPlan {
        retire,
        ..RotationPlan::default()
    };
    let Some(signer) = signing_key(&live, now) else {
        plan.create = Some(policy.window_from(now));
        return plan;
    };
    let has_successor = live
        .iter()
        .any(|k| k.window.sign_from >= signer.window.sign_until);
    let due = now.saturating_add(policy.publish_ahead) >= signer.window.sign_until;
    if !has_successor && due {
        let from = signer
            .window
            .sign_until
            .max(now.saturating_add(policy.publish_ahead));
        if from > signer.window.sign_until {
            plan.extend = Some((
                signer.key_id.clone(),
                KeyWindow {
                    sign_from: signer.window.sign_from,
                    sign_until: from,
                    publish_until: policy.publish_until(from),
                },
            ));
        }
        plan.create = Some(policy.window_from(from));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy {
        rotation: 1000,
        publish_ahead: 100,
        token_lifetime: 50,
        retire_margin: 10,
    };

    fn key(id: &str, sign_from: u64, sign_until: u64, publish_until: u64) -> ScheduledKey {
        ScheduledKey {
            key_id: id.into(),
            window: KeyWindow {
                sign_from,
                sign_until,
                publish_until,
            },
        }
    }

    fn w(sign_from: u64, sign_until: u64, publish_until: u64) -> KeyWindow {
        KeyWindow {
            sign_from,
            sign_until,
            publish_until,
        }
    }

    #[test]
    fn plans() {
        let a = key("a", 0, 1000, 1060);
        let b = key("b", 1000, 2000, 2060);
        let pending_far = key("p", 5000, 6000, 6060);
        struct Case {
            desc: &'static str,
            keys: Vec<ScheduledKey>,
            now: u64,
            want: RotationPlan,
        }
        let none = RotationPlan::default();
        let cases = [
            Case {
                desc: "empty store: a key that signs at once",
                keys: vec![],
                now: 10,
                want: RotationPlan {
                    create: Some(w(10, 1010, 1070)),
                    ..none.clone()
                },
            },
            Case {
                desc: "mid-window: nothing",
                keys: vec![a.clone()],
                now: 500,
                want: none.clone(),
            },
            Case {
                desc: "just before the successor is due: nothing",
                keys: vec![a.clone()],
                now: 899,
                want: none.clone(),
            },
            Case {
                desc: "successor due: published publish_ahead before it signs",
                keys: vec![a.clone()],
                now: 900,
                want: RotationPlan {
                    create: Some(w(1000, 2000, 2060)),
                    ..none.clone()
                },
            },
            Case {
                desc: "successor exists: nothing",
                keys: vec![a.clone(), b.clone()],
                now: 950,
                want: none.clone(),
            },
            Case {
                desc: "late start near the end: current key extended until the successor may sign",
                keys: vec![a.clone()],
                now: 950,
                want: RotationPlan {
                    create: Some(w(1050, 2050, 2110)),
                    extend: Some(("a".into(), w(0, 1050, 1110))),
                    ..none.clone()
                },
            },
            Case {
                desc: "old key retired once its tokens expired (+ margin)",
                keys: vec![a.clone(), b.clone()],
                now: 1060,
                want: RotationPlan {
                    retire: vec!["a".into()],
                    ..none.clone()
                },
            },
            Case {
                desc: "old key still published while its tokens may be valid",
                keys: vec![a.clone(), b.clone()],
                now: 1059,
                want: none.clone(),
            },
            Case {
                desc: "everything expired (long outage): retire all, sign at once",
                keys: vec![a.clone(), b.clone()],
                now: 3000,
                want: RotationPlan {
                    create: Some(w(3000, 4000, 4060)),
                    retire: vec!["a".into(), "b".into()],
                    ..none.clone()
                },
            },
            Case {
                desc: "window ended but still published: a new key signs at once",
                keys: vec![a.clone()],
                now: 1020,
                want: RotationPlan {
                    create: Some(w(1020, 2020, 2080)),
                    ..none.clone()
                },
            },
            Case {
                desc: "a pending key far ahead does not count as the signer",
                keys: vec![pending_far.clone()],
                now: 10,
                want: RotationPlan {
                    create: Some(w(10, 1010, 1070)),
                    ..none.clone()
                },
            },
        ];
        for case in cases {
            assert_eq!(
                plan_rotation(&case.keys, case.now, &POLICY),
                case.want,
                "{}",
                case.desc
            );
        }
    }

    #[test]
    fn signer_and_published_keys() {
        let a = key("a", 0, 1000, 1060);
        let b = key("b", 1000, 2000, 2060);
        let keys = vec![b.clone(), a.clone()];
        let ids = |v: Vec<&ScheduledKey>| v.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>();
        // Before b signs, it is published already; a signs.
        assert_eq!(signing_key(&keys, 950).unwrap().key_id, "a");
        assert_eq!(ids(published_keys(&keys, 950)), ["a", "b"]);
        // b signs from its first second; a stays published for tokens it signed.
        assert_eq!(signing_key(&keys, 1000).unwrap().key_id, "b");
        assert_eq!(ids(published_keys(&keys, 1059)), ["a", "b"]);
        assert_eq!(ids(published_keys(&keys, 1060)), ["b"]);
        assert!(signing_key(&keys, 2000).is_none());
        // Overlapping windows (an extended key): the latest to start signs.
        let c = key("c", 500, 1500, 1560);
        assert_eq!(signing_key(&[a, c], 600).unwrap().key_id, "c");
    }

    #[test]
    fn following_the_plan_keeps_the_promises() {
        // Apply plans every 7 s over several rotations: some key always signs, every key is
        // published publish_ahead before it signs (except the very first), and a key is
        // published until its last token expired.
        let mut keys: Vec<ScheduledKey> = Vec::new();
        let mut created_at: Vec<(String, u64)> = Vec::new();
        let mut n = 0;
        for now in (0..5000).step_by(7) {
            let plan = plan_rotation(&keys, now, &POLICY);
            for k in keys.iter().filter(|k| plan.retire.contains(&k.key_id)) {
                assert!(
                    k.window.sign_until + POLICY.token_lifetime <= now,
                    "{} retired while its tokens may be valid",
                    k.key_id
                );
            }
            keys.retain(|k| !plan.retire.contains(&k.key_id));
            if let Some((id, window)) = plan.extend {
                keys.iter_mut().find(|k| k.key_id == id).unwrap().window = window;
            }
            if let Some(window) = plan.create {
                n += 1;
                keys.push(ScheduledKey {
                    key_id: format!("k{n}"),
                    window,
                });
                created_at.push((format!("k{n}"), now));
            }
            let signer = signing_key(&keys, now).expect("a key signs");
            let published = published_keys(&keys, now);
            assert!(published.iter().any(|k| k.key_id == signer.key_id));
            let created = created_at
                .iter()
                .find(|(id, _)| *id == signer.key_id)
                .unwrap()
                .1;
            if signer.key_id != "k1" {
                assert!(signer.window.sign_from >= created + POLICY.publish_ahead);
            }
            // Every key that signed within the last token lifetime is still published.
            for k in &keys {
                if k.window.sign_from <= now && now < k.window.sign_until + POLICY.token_lifetime {
                    assert!(published.iter().any(|p| p.key_id == k.key_id));
                }
            }
            assert!(
                plan_rotation(&keys, now, &POLICY).is_empty(),
                "stable at {now}"
            );
        }
        assert!(n >= 5);
    }
}
