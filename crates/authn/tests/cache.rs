//! The verified-token cache skips only the key lookup and signature: issuer, time and audience
//! are rechecked on every call, and entries are per exact token.
#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use authn::{Allowed, AuthError, AuthInputs, DEFAULT_SKEW, KeySets, authenticate};
use common::*;
use http::{HeaderMap, HeaderValue, Uri};
use jose::{KeySet, UnixTime};
use serde_json::json;
use service_config::ProviderId;

fn run(
    method_name: &str,
    header: (&'static str, String),
    keys: &dyn KeySets,
    cache: &MapCache,
    now: UnixTime,
) -> Result<Allowed, AuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(header.0, HeaderValue::from_str(&header.1).unwrap());
    let uri: Uri = format!("/{PKG}/{method_name}").parse().unwrap();
    let inputs = AuthInputs {
        keys,
        cache,
        now,
        skew: DEFAULT_SKEW,
    };
    authenticate(method(method_name), &headers, &uri, &inputs)
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn subject(verdict: Result<Allowed, AuthError>) -> String {
    match verdict {
        Ok(Allowed { principal: Some(p) }) => p.subject().unwrap_or_default().to_owned(),
        other => panic!("want a principal, got {other:?}"),
    }
}

fn message(verdict: Result<Allowed, AuthError>) -> (u16, String) {
    match verdict {
        Err(e) => (e.code().as_u16(), e.to_string()),
        Ok(v) => panic!("want a rejection, got {v:?}"),
    }
}

/// Key sets in which no provider has the keys that signed the test tokens: only a cache hit can
/// get a token past the key check with these.
fn foreign_keys() -> HashMap<ProviderId, Arc<KeySet>> {
    let set = Arc::new(jwks(&[jwk(stranger(), "rsa-1")]));
    ["a", "b", "opt", "custom", "second"]
        .into_iter()
        .map(|id| (ProviderId::new(id), Arc::clone(&set)))
        .collect()
}

#[test]
fn a_hit_skips_the_signature_but_not_the_time() {
    let cache = MapCache::default();
    let good = token(&claims());
    assert_eq!(
        subject(run("ListShelves", bearer(&good), &key_sets(), &cache, NOW)),
        "user@example.com"
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.hits(), 0);

    // The keys that signed it are gone, yet the cached verification stands...
    let foreign = foreign_keys();
    assert_eq!(
        subject(run(
            "ListShelves",
            bearer(&good),
            &foreign,
            &cache,
            UnixTime(NOW.0 + 60)
        )),
        "user@example.com"
    );
    assert_eq!(cache.hits(), 1);
    // ...until the token expires: exp + skew is the last good second.
    assert!(
        run(
            "ListShelves",
            bearer(&good),
            &foreign,
            &cache,
            UnixTime(NOW.0 + 3660)
        )
        .is_ok()
    );
    assert_eq!(
        message(run(
            "ListShelves",
            bearer(&good),
            &foreign,
            &cache,
            UnixTime(NOW.0 + 3661)
        )),
        (16, "Jwt is expired".to_owned())
    );
    assert_eq!(cache.hits(), 3);
}

#[test]
fn a_hit_rechecks_audience_and_issuer_per_method() {
    let cache = MapCache::default();
    let keys = key_sets();
    let good = token(&claims());
    assert!(run("ListShelves", bearer(&good), &keys, &cache, NOW).is_ok());

    // GetBook requires the audience https://override.example.com/.
    assert_eq!(
        message(run("GetBook", bearer(&good), &keys, &cache, NOW)),
        (7, "Audiences in Jwt are not allowed".to_owned())
    );
    // ListBooks accepts only provider `custom` (another issuer), in its own header.
    assert_eq!(
        message(run(
            "ListBooks",
            ("x-custom-token", format!("Token {good}")),
            &keys,
            &cache,
            NOW
        )),
        (16, "Jwt issuer is not configured".to_owned())
    );
    assert_eq!(cache.hits(), 2);
}

#[test]
fn a_hit_still_needs_the_key_set() {
    let cache = MapCache::default();
    let good = token(&claims());
    assert!(run("ListShelves", bearer(&good), &key_sets(), &cache, NOW).is_ok());
    let mut without_a = key_sets();
    without_a.remove(&ProviderId::new("a"));
    let error = run("ListShelves", bearer(&good), &without_a, &cache, NOW).unwrap_err();
    assert_eq!(error.to_string(), "Jwks remote fetch is failed");
    assert_eq!(cache.hits(), 1);
}

#[test]
fn two_tokens_never_share_an_entry() {
    let cache = MapCache::default();
    let keys = key_sets();
    let alice = token(&claims_with(json!({"sub": "alice"})));
    let bob = token(&claims_with(json!({"sub": "bob"})));
    assert_eq!(
        subject(run("ListShelves", bearer(&alice), &keys, &cache, NOW)),
        "alice"
    );
    assert_eq!(
        subject(run("ListShelves", bearer(&bob), &keys, &cache, NOW)),
        "bob"
    );
    assert_eq!(cache.len(), 2);
    assert_eq!(
        subject(run("ListShelves", bearer(&alice), &keys, &cache, NOW)),
        "alice"
    );
    assert_eq!(cache.hits(), 1);

    // Same header and payload as a cached token, another signature: a miss, then rejected.
    let forged = tampered(&alice);
    assert_eq!(
        message(run("ListShelves", bearer(&forged), &keys, &cache, NOW)),
        (16, "Jwt verification fails".to_owned())
    );
    // Same signature, another payload: a miss too.
    let swapped = with_payload(&alice, &claims_with(json!({"sub": "admin"})));
    assert_eq!(
        message(run("ListShelves", bearer(&swapped), &keys, &cache, NOW)),
        (16, "Jwt verification fails".to_owned())
    );
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.hits(), 1);
}

#[test]
fn rejected_tokens_are_not_cached() {
    let cache = MapCache::default();
    let keys = key_sets();
    let wrong_aud = token(&claims_with(json!({"aud": "other"})));
    assert!(run("ListShelves", bearer(&wrong_aud), &keys, &cache, NOW).is_err());
    assert!(
        run(
            "ListShelves",
            bearer(&tampered(&token(&claims()))),
            &keys,
            &cache,
            NOW
        )
        .is_err()
    );
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_hit_from_another_provider_is_not_trusted() {
    // `a2` has `a`'s issuer but other keys. A token verified with a2's keys (on GetShelf,
    // which accepts a, b or a2) is not vouched for when ListShelves requires `a`.
    let cache = MapCache::default();
    let keys = key_sets();
    let by_a2 = token_by(b_key(), Some("b-1"), &claims());
    let verdict = run("GetShelf", bearer(&by_a2), &keys, &cache, NOW);
    let Ok(Allowed {
        principal: Some(principal),
    }) = verdict
    else {
        panic!("want a principal, got {verdict:?}");
    };
    assert_eq!(principal.provider().as_str(), "a2");
    assert_eq!(
        message(run("ListShelves", bearer(&by_a2), &keys, &cache, NOW)),
        (
            16,
            "Jwks doesn't have key to match kid or alg from Jwt".to_owned()
        )
    );
    assert_eq!(cache.hits(), 1);
}
