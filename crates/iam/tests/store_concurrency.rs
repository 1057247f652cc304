//! Writers racing on one store, on both backends: where a read decides a write (revoking an
//! API key, making an account's server-managed key), writers that start at the same instant
//! still decide once. SQLite serialises them with `BEGIN IMMEDIATE`, PostgreSQL with the
//! store's advisory write lock.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Barrier;
use std::thread;

use iam::{Kek, Revocation, Store, TokenService, TokenServiceSettings};
use serde_json::Map;
use testkit::TestStore;

const NOW: u64 = 1_750_000_000;
const WRITERS: usize = 6;
const ROUNDS: usize = 15;

/// Six connections revoke the same key at the same instant, fifteen times over: each key is
/// revoked once (one `Revoked`, the rest `AlreadyRevoked` with the first writer's time).
fn racing_revocations_revoke_once(ts: TestStore) {
    let mut store = Store::open(ts.location()).unwrap();
    let ids: Vec<String> = (0..ROUNDS)
        .map(|_| store.create_api_key("my-project", None, NOW).unwrap().1.id)
        .collect();
    let barrier = Barrier::new(WRITERS);
    let outcomes: Vec<Vec<(u64, Revocation)>> = thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (ts, ids, barrier) = (&ts, &ids, &barrier);
                s.spawn(move || {
                    let mut store = Store::open(ts.location()).unwrap();
                    ids.iter()
                        .map(|id| {
                            barrier.wait();
                            let at = NOW + 1 + w as u64;
                            (at, store.revoke_api_key(id, at).unwrap())
                        })
                        .collect()
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (round, id) in ids.iter().enumerate() {
        let results: Vec<&(u64, Revocation)> = outcomes.iter().map(|o| &o[round]).collect();
        let winners: Vec<u64> = results
            .iter()
            .filter(|(_, r)| *r == Revocation::Revoked)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (_, result) in &results {
            if let Revocation::AlreadyRevoked { at } = result {
                assert_eq!(*at, winners[0], "round {round}: {results:?}");
            }
        }
        assert_eq!(store.api_key(id).unwrap().revoked, Some(winners[0]));
    }
}

/// Two token services (two key servers) sign as one account for the first time at the same
/// instant: one server-managed key is made, and both sign with it.
fn racing_key_servers_make_one_account_key(ts: TestStore) {
    let account = Store::open(ts.location())
        .unwrap()
        .create_account("signing-user", "my-project", 1)
        .unwrap();
    let kek = Kek::generate().unwrap();
    let services: Vec<TokenService> = (0..2)
        .map(|_| {
            TokenService::open(
                ts.location(),
                TokenServiceSettings::new("http://iam.test", kek.clone()),
            )
            .unwrap()
        })
        .collect();
    let barrier = Barrier::new(services.len());
    let kids: Vec<String> = thread::scope(|s| {
        let signers: Vec<_> = services
            .iter()
            .map(|service| {
                let (account, barrier) = (&account, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    service.sign_jwt_as(account, &Map::new()).unwrap().0
                })
            })
            .collect();
        signers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(kids[0], kids[1]);
    let served = Store::open(ts.location())
        .unwrap()
        .served_keys(&account.email)
        .unwrap();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].key_id, kids[0]);
}

testkit::store_tests!(
    racing_revocations_revoke_once,
    racing_key_servers_make_one_account_key,
);
