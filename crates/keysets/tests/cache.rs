//! The cache over real sockets and real time: background fetch, refresh, stale bound,
//! refetch single-flight and rate limit.

mod common;

use std::time::{Duration, Instant};

use common::{init_logs, kids, provider, wait_for};
use jose::{Algorithm, JoseError};
use keysets::test_server::{self, KeyServer, Reply};
use keysets::{CachedKeySet, JwksCache, JwksSettings, Refetch};
use service_config::ProviderId;

fn fast() -> JwksSettings {
    JwksSettings {
        cache_duration: Duration::from_secs(300),
        max_stale: Duration::from_secs(300),
        refetch_interval: Duration::from_secs(30),
        fetch_timeout: Duration::from_secs(2),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..JwksSettings::default()
    }
}

fn id(s: &str) -> ProviderId {
    ProviderId::new(s)
}

#[tokio::test]
async fn initial_fetch_happens_in_the_background() {
    init_logs();
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set(
        "/jwks",
        Reply::slow(
            // Below fast()'s 2 s fetch timeout.
            Duration::from_millis(1200),
            Reply::json(test_server::jwks(&[("a", &a)])),
        ),
    );
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], fast()).unwrap();
    let started = Instant::now();
    cache.start();
    // Far below the key server's 1.2 s, with room for a loaded CI machine.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "start() must not wait"
    );
    assert!(matches!(
        cache.state(&id("p")),
        CachedKeySet::NotFetched { last_error: None }
    ));
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);
    assert_eq!(server.hits("/jwks"), 1);
}

#[tokio::test]
async fn refreshes_after_the_cache_duration() {
    let a = jose::generate_es256().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        cache_duration: Duration::from_millis(1000),
        ..fast()
    };
    let cache =
        JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    let first = Instant::now();
    server.set("/jwks", Reply::json(test_server::jwks(&[("b", &b)])));
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            == Some(vec!["b".into()]))
        .await,
        "the rotated set must arrive by a background refresh"
    );
    let took = first.elapsed();
    // Refresh at 80% of 1 s after the first fetch; allow for scheduling.
    assert!(
        took >= Duration::from_millis(500),
        "refreshed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "refreshed too late: {took:?}"
    );
    assert_eq!(server.hits("/jwks"), 2);
}

#[tokio::test]
async fn keeps_the_stale_set_then_fails_closed_then_recovers() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        cache_duration: Duration::from_millis(600),
        max_stale: Duration::from_millis(1400),
        ..fast()
    };
    let cache =
        JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    let fetched = Instant::now();
    server.stop().await;

    // Past the cache duration, refreshes failing: the last good set is still served.
    // Real time: freshness runs on tokio's clock in tasks that fetch over real sockets; a paused
    // clock would jump past fetch timeouts while the kernel carries the request.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);

    // Past cache_duration + max_stale (2 s after the fetch): fail closed.
    assert!(
        wait_for(Duration::from_secs(3), || kids(&cache.state(&id("p")))
            .is_none())
        .await,
        "the stale set must expire"
    );
    assert!(
        fetched.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        fetched.elapsed()
    );
    match cache.state(&id("p")) {
        CachedKeySet::NotFetched {
            last_error: Some(e),
        } => {
            assert!(e.contains("max_stale"), "{e}");
            assert!(e.contains("failed"), "{e}");
        }
        other => panic!("want NotFetched with an error, got {other:?}"),
    }

    // The server comes back: retries (bounded backoff) pick the set up again.
    server.restart().await.unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
}

#[tokio::test]
async fn a_set_with_no_usable_key_never_replaces_a_good_one() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        cache_duration: Duration::from_millis(500),
        refetch_interval: Duration::from_millis(1),
        ..fast()
    };
    let cache =
        JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );

    let bad_sets = [
        // An HMAC key from a remote source is skipped, leaving nothing usable.
        test_server::hmac_jwks("h", &[1u8; 32]),
        r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}"#.to_owned(),
        "garbage".to_owned(),
    ];
    for bad in bad_sets {
        server.set("/jwks", Reply::json(bad.clone()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        match cache.refetch(&id("p"), None).await {
            Refetch::Failed { .. } => {}
            other => panic!("{bad}: want Failed, got {other:?}"),
        }
        assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"], "{bad}");
    }
    // Background refreshes of the bad set do not replace it either.
    let hits = server.hits("/jwks");
    assert!(wait_for(Duration::from_secs(3), || server.hits("/jwks") >= hits + 2).await);
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);
}

#[tokio::test]
async fn concurrent_refetches_share_one_request() {
    let a = jose::generate_es256().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], fast()).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    assert_eq!(server.hits("/jwks"), 1);

    server.set(
        "/jwks",
        Reply::slow(
            Duration::from_millis(800),
            Reply::json(test_server::jwks(&[("a", &a), ("b", &b)])),
        ),
    );
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.refetch(&ProviderId::new("p"), None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    assert_eq!(
        server.hits("/jwks"),
        2,
        "20 concurrent refetches, one request"
    );
    let fetched = outcomes.iter().filter(|o| **o == Refetch::Fetched).count();
    assert_eq!(fetched, 1, "{outcomes:?}");
    // Every caller returns after the fetch, sees the new set (none is rate-limited: they
    // were all waiting for the one fetch).
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Refetch::Fetched | Refetch::Joined)),
        "{outcomes:?}"
    );
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a", "b"]);
}

#[tokio::test]
async fn refetch_is_rate_limited() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        refetch_interval: Duration::from_millis(700),
        ..fast()
    };
    let cache =
        JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );

    assert_eq!(cache.refetch(&id("p"), None).await, Refetch::Fetched);
    assert_eq!(server.hits("/jwks"), 2);
    for _ in 0..5 {
        assert_eq!(cache.refetch(&id("p"), None).await, Refetch::RateLimited);
    }
    assert_eq!(
        server.hits("/jwks"),
        2,
        "rate-limited refetches send nothing"
    );
    // Real time, as above: the refill is followed by a real fetch over a socket.
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(cache.refetch(&id("p"), None).await, Refetch::Fetched);
    assert_eq!(server.hits("/jwks"), 3);
}

#[tokio::test]
async fn a_freshly_rotated_key_verifies_on_the_first_call() {
    let old = jose::generate_rsa_2048().unwrap();
    let new = jose::generate_rsa_2048().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("old", &old)])));
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], fast()).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );

    // The provider rotates, and a token signed with the new key arrives at once.
    server.set(
        "/jwks",
        Reply::json(test_server::jwks(&[("old", &old), ("new", &new)])),
    );
    let token = new
        .signer()
        .unwrap()
        .sign_jwt(
            Some("new"),
            Algorithm::RS256,
            &serde_json::json!({"iss": "iss"}),
        )
        .unwrap();
    let jws = jose::Jws::parse(&token).unwrap();

    // What the proxy does on one request: verify, refetch on an unknown kid, verify again.
    let CachedKeySet::Ready(keys) = cache.state(&id("p")) else {
        panic!("not ready")
    };
    let err = jose::verify(&jws, &keys).unwrap_err();
    assert!(matches!(err, JoseError::KeyNotFound { .. }), "{err:?}");
    assert_eq!(cache.refetch(&id("p"), None).await, Refetch::Fetched);
    let CachedKeySet::Ready(keys) = cache.state(&id("p")) else {
        panic!("not ready")
    };
    let key = jose::verify(&jws, &keys).unwrap();
    assert_eq!(key.kid().unwrap().as_str(), "new");
}

#[tokio::test]
async fn a_refetch_during_the_initial_fetch_joins_it() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set(
        "/jwks",
        Reply::slow(
            Duration::from_millis(400),
            Reply::json(test_server::jwks(&[("a", &a)])),
        ),
    );
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], fast()).unwrap();
    cache.start();
    // Let the background task take the fetch first.
    assert!(wait_for(Duration::from_secs(2), || server.hits("/jwks") == 1).await);
    assert_eq!(cache.refetch(&id("p"), None).await, Refetch::Joined);
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);
    assert_eq!(server.hits("/jwks"), 1);
}

#[tokio::test]
async fn providers_are_independent_and_unknown_ones_fail_closed() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/good", Reply::json(test_server::jwks(&[("a", &a)])));
    server.set("/bad", Reply::status(500));
    let cache = JwksCache::new(
        &[
            provider("good", "iss1", Some(server.url("/good"))),
            provider("bad", "iss2", Some(server.url("/bad"))),
        ],
        fast(),
    )
    .unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("good")))
            .is_some())
        .await
    );
    assert!(
        wait_for(Duration::from_secs(5), || matches!(
            cache.state(&id("bad")),
            CachedKeySet::NotFetched {
                last_error: Some(_)
            }
        ))
        .await
    );
    // Failed fetches are retried with backoff.
    assert!(wait_for(Duration::from_secs(3), || server.hits("/bad") >= 3).await);
    assert!(matches!(
        cache.state(&id("nope")),
        CachedKeySet::NotFetched {
            last_error: Some(_)
        }
    ));
    assert_eq!(
        cache.refetch(&id("nope"), None).await,
        Refetch::UnknownProvider
    );
}

#[tokio::test]
async fn dropping_the_cache_stops_its_tasks() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::status(500));
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], fast()).unwrap();
    cache.start();
    assert!(wait_for(Duration::from_secs(3), || server.hits("/jwks") >= 2).await);
    drop(cache);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hits = server.hits("/jwks");
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    // Real time: a paused clock would let this pass even if a task still fetched, since the
    // sleep would end before its request crossed the socket.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.hits("/jwks"), hits);
}

#[tokio::test]
async fn an_explicitly_empty_set_withdraws_every_key() {
    // The key server lists no keys any more (the issuer's last key was disabled or deleted):
    // unlike garbage or unusable keys, this replaces the cached set, so tokens stop verifying.
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        refetch_interval: Duration::from_millis(1),
        ..fast()
    };
    let cache =
        JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings).unwrap();
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    for empty in [r#"{"keys": []}"#, "{}"] {
        server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
        tokio::time::sleep(Duration::from_millis(5)).await;
        cache.refetch(&id("p"), None).await;
        assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);
        server.set("/jwks", Reply::json(empty));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            cache.refetch(&id("p"), None).await,
            Refetch::Fetched,
            "{empty}"
        );
        match cache.state(&id("p")) {
            CachedKeySet::Ready(keys) => assert!(keys.keys().is_empty(), "{empty}"),
            other => panic!("{empty}: want an empty Ready set, got {other:?}"),
        }
    }
}

fn kid(s: &str) -> jose::Kid {
    jose::Kid::from(s)
}

async fn ready_cache(server: &KeyServer, settings: JwksSettings) -> JwksCache {
    let cache = JwksCache::new(&[provider("p", "iss", Some(server.url("/jwks")))], settings)
        .expect("a cache");
    cache.start();
    assert!(
        wait_for(Duration::from_secs(5), || kids(&cache.state(&id("p")))
            .is_some())
        .await
    );
    cache
}

#[tokio::test]
async fn a_bogus_kid_does_not_block_a_new_key() {
    // The tutorial's sequence: a token with a kid nobody has (another account's key), then a
    // key rotation and a token signed with the new key, all within one refetch interval.
    let a = jose::generate_es256().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let cache = ready_cache(&server, fast()).await;

    assert_eq!(
        cache.refetch(&id("p"), Some(&kid("bogus"))).await,
        Refetch::Fetched
    );
    assert_eq!(
        cache.refetch(&id("p"), Some(&kid("bogus"))).await,
        Refetch::RateLimited,
        "the same unknown kid is not refetched for again within the interval"
    );
    assert_eq!(server.hits("/jwks"), 2);

    server.set(
        "/jwks",
        Reply::json(test_server::jwks(&[("a", &a), ("b", &b)])),
    );
    assert_eq!(
        cache.refetch(&id("p"), Some(&kid("b"))).await,
        Refetch::Fetched
    );
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a", "b"]);
    // A kid that is now in the set costs nothing.
    assert_eq!(
        cache.refetch(&id("p"), Some(&kid("b"))).await,
        Refetch::Joined
    );
    assert_eq!(server.hits("/jwks"), 3);
}

#[tokio::test]
async fn random_kids_fetch_at_most_the_limit() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let settings = JwksSettings {
        refetch_limit: 3,
        ..fast()
    };
    let cache = ready_cache(&server, settings).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .refetch(&ProviderId::new("p"), Some(&kid(&format!("random-{i}"))))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    let fetched = outcomes.iter().filter(|o| **o == Refetch::Fetched).count();
    assert_eq!(fetched, 3, "{outcomes:?}");
    assert_eq!(server.hits("/jwks"), 1 + 3, "initial fetch plus the bucket");
    assert!(outcomes.contains(&Refetch::BudgetExhausted), "{outcomes:?}");
}

#[tokio::test]
async fn concurrent_refetches_for_one_kid_share_one_fetch() {
    let a = jose::generate_es256().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let cache = ready_cache(&server, fast()).await;
    server.set(
        "/jwks",
        Reply::slow(
            Duration::from_millis(500),
            Reply::json(test_server::jwks(&[("a", &a), ("b", &b)])),
        ),
    );
    for wanted in ["b", "never-there"] {
        let before = server.hits("/jwks");
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache
                        .refetch(&ProviderId::new("p"), Some(&kid(wanted)))
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        assert!(server.hits("/jwks") <= before + 1, "{wanted}: one fetch");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Refetch::Fetched | Refetch::Joined)),
            "{wanted}: {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_set_with_too_many_keys_never_replaces_a_good_one() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let cache = ready_cache(&server, fast()).await;
    let names: Vec<String> = (0..=jose::MAX_KEYS).map(|i| format!("k{i}")).collect();
    let many: Vec<(&str, &jose::GeneratedKey)> = names.iter().map(|k| (k.as_str(), &a)).collect();
    server.set("/jwks", Reply::json(test_server::jwks(&many)));
    assert!(matches!(
        cache.refetch(&id("p"), Some(&kid("k7"))).await,
        Refetch::Failed { .. }
    ));
    assert_eq!(kids(&cache.state(&id("p"))).unwrap(), ["a"]);
}

/// A reload: the provider whose id, issuer and `jwks_uri` are unchanged keeps its fetched set
/// and its refresh task (no fetch), the changed one starts over from its new URI, and the
/// removed one's refresh task stops once the old cache is dropped.
#[tokio::test]
async fn reconfigure_keeps_unchanged_providers() {
    init_logs();
    let a = jose::generate_es256().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/a", Reply::json(test_server::jwks(&[("a", &a)])));
    server.set("/b", Reply::json(test_server::jwks(&[("b", &b)])));
    server.set("/b2", Reply::json(test_server::jwks(&[("b2", &b)])));
    server.set("/gone", Reply::json(test_server::jwks(&[("g", &b)])));
    let settings = JwksSettings {
        // A refresh every 80 ms: a task still running shows in the hit counts at once.
        cache_duration: Duration::from_millis(100),
        ..fast()
    };
    let old = JwksCache::new(
        &[
            provider("p", "iss-p", Some(server.url("/a"))),
            provider("q", "iss-q", Some(server.url("/b"))),
            provider("gone", "iss-g", Some(server.url("/gone"))),
        ],
        settings,
    )
    .unwrap();
    old.start();
    assert!(
        wait_for(Duration::from_secs(5), || old.never_fetched().is_empty()).await,
        "{:?}",
        old.never_fetched()
    );

    let mut kept = provider("p", "iss-p", Some(server.url("/a")));
    // Audiences do not change the keys.
    kept.audiences = vec![service_config::Audience::new("other")];
    let new = old.reconfigure(&[kept, provider("q", "iss-q", Some(server.url("/b2")))]);
    new.start();
    assert!(new.shares_provider(&old, &id("p")));
    assert!(!new.shares_provider(&old, &id("q")));
    // The kept provider is usable at once, with the set fetched before.
    assert_eq!(kids(&new.state(&id("p"))).unwrap(), ["a"]);
    assert!(matches!(
        new.state(&id("gone")),
        CachedKeySet::NotFetched { .. }
    ));
    assert!(
        wait_for(Duration::from_secs(5), || kids(&new.state(&id("q")))
            == Some(vec!["b2".to_owned()]))
        .await
    );

    drop(old);
    // Let an abort land, then the removed provider is never fetched again, while the kept
    // one's refresh task (shared, not restarted) still runs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (gone, kept_hits) = (server.hits("/gone"), server.hits("/a"));
    assert!(
        wait_for(Duration::from_secs(5), || server.hits("/a") > kept_hits + 1).await,
        "the kept provider's refresh task stopped"
    );
    assert_eq!(
        server.hits("/gone"),
        gone,
        "the removed provider is still fetched"
    );
    assert_eq!(kids(&new.state(&id("p"))).unwrap(), ["a"]);
}
