//! Property tests of the parsers a client or a key server reaches (issue 9): compact JWS/JWT
//! parsing and key-set parsing. Whatever the input: no panic; a token is accepted as verified
//! only when it is the untouched, validly signed one; a key set never holds more than
//! `MAX_KEYS` keys.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use common::*;
use jose::{Algorithm, JoseError, Jws, Jwt, KeySet, KeySource, MAX_KEYS, verify};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Valid tokens (ES256, RS256, ES256 without `kid`) and the key set that verifies them, made
/// once.
fn fixtures() -> (Vec<String>, KeySet) {
    static FIXTURES: std::sync::LazyLock<(Vec<String>, KeySet)> =
        std::sync::LazyLock::new(make_fixtures);
    FIXTURES.clone()
}

fn make_fixtures() -> (Vec<String>, KeySet) {
    let es = p256()
        .sign_jwt(Some("ec"), Algorithm::ES256, &claims())
        .unwrap();
    let rs = rsa()
        .sign_jwt(Some("rsa"), Algorithm::RS256, &claims())
        .unwrap();
    let no_kid = p256().sign_jwt(None, Algorithm::ES256, &claims()).unwrap();
    let keys = jwks(
        &[
            jwk(&p256(), "ec", None),
            jwk(&rsa(), "rsa", None),
            jwk(&ed25519(), "ed", None),
        ],
        KeySource::Remote,
    );
    (vec![es, rs, no_kid], keys)
}

/// Parses and verifies; `true` only when the signature verified.
fn accepted(token: &str, keys: &KeySet) -> bool {
    match Jwt::parse(token) {
        Ok(jwt) => verify(jwt.jws(), keys).is_ok(),
        Err(_) => false,
    }
}

/// One edit of a token.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte at a position (modulo the length).
    Flip(usize, u8),
    /// Insert a character.
    Insert(usize, char),
    /// Remove `len` bytes.
    Remove(usize, usize),
    /// Keep the first bytes only.
    Truncate(usize),
    /// Swap two of the three segments.
    SwapSegments(usize, usize),
    /// Replace a segment with arbitrary text.
    ReplaceSegment(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        (0..3usize, "[A-Za-z0-9_.=+/-]{0,40}").prop_map(|(i, s)| Mutation::ReplaceSegment(i, s)),
    ]
}

fn apply(token: &str, m: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let len = bytes.len();
    match m {
        Mutation::Flip(i, x) => bytes[i % len] ^= x,
        Mutation::Insert(i, c) => {
            let mut buf = [0u8; 4];
            let at = i % (len + 1);
            bytes.splice(at..at, c.encode_utf8(&mut buf).bytes());
        }
        Mutation::Remove(i, n) => {
            let at = i % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::SwapSegments(a, b) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            let n = parts.len();
            parts.swap(a % n, b % n);
            return parts.join(".");
        }
        Mutation::ReplaceSegment(i, s) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            let n = parts.len();
            parts[i % n] = s;
            return parts.join(".");
        }
    }
    // A flip can make invalid UTF-8; the proxy only ever sees header text, so lossy is fair.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        "[ -~]{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("RSA"),
            Just("EC"),
            Just("OKP"),
            Just("oct"),
            Just("P-256"),
            Just("Ed25519"),
            Just("RS256"),
            Just("ES256"),
            Just("sig"),
            Just("AQAB"),
            Just("kid")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("keys".to_owned()),
                    Just("kty".to_owned()),
                    Just("n".to_owned()),
                    Just("e".to_owned()),
                    Just("x".to_owned()),
                    Just("y".to_owned()),
                    Just("crv".to_owned()),
                    Just("alg".to_owned()),
                    Just("kid".to_owned()),
                    Just("use".to_owned()),
                    Just("k".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_never_panic_nor_verify(token in any::<String>()) {
        let (_, keys) = fixtures();
        let _ = Jws::parse(&token);
        prop_assert!(!accepted(&token, &keys));
    }

    #[test]
    fn token_shaped_strings_never_verify(
        header in "[A-Za-z0-9_-]{0,60}",
        payload in "[A-Za-z0-9_-]{0,60}",
        signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        let (_, keys) = fixtures();
        let token = format!("{header}.{payload}.{signature}");
        prop_assert!(!accepted(&token, &keys));
    }

    #[test]
    fn arbitrary_headers_and_payloads_never_verify_unsigned(
        header in json_value(),
        payload in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let (_, keys) = fixtures();
        let token = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes()),
            b64(&signature)
        );
        let _ = Jws::parse(&token);
        prop_assert!(!accepted(&token, &keys));
    }

    #[test]
    fn mutated_valid_tokens_are_accepted_only_untouched(
        which in 0..3usize,
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let (tokens, keys) = fixtures();
        let original = &tokens[which];
        prop_assert!(accepted(original, &keys));
        let mut token = original.clone();
        for edit in &edits {
            if token.is_empty() {
                break;
            }
            token = apply(&token, edit);
        }
        if &token != original {
            prop_assert!(!accepted(&token, &keys), "{edits:?} => {token}");
        }
    }

    #[test]
    fn arbitrary_bytes_as_key_sets_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for source in [KeySource::Remote, KeySource::Local] {
            if let Ok(set) = KeySet::parse(&bytes, source) {
                prop_assert!(set.keys().len() <= MAX_KEYS);
            }
        }
    }

    #[test]
    fn arbitrary_json_as_key_sets_never_panics(value in json_value()) {
        let text = value.to_string();
        let wrapped = json!({ "keys": [value.clone()] }).to_string();
        for bytes in [text.as_bytes(), wrapped.as_bytes()] {
            if let Ok(set) = KeySet::parse(bytes, KeySource::Remote) {
                prop_assert!(set.keys().len() <= MAX_KEYS);
            }
        }
    }

    #[test]
    fn mutated_key_sets_never_panic_and_never_verify_with_a_changed_key(
        format in 0..3usize,
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let (tokens, _) = fixtures();
        let doc = match format {
            0 => json!({ "keys": [jwk(&p256(), "ec", None), jwk(&rsa(), "rsa", None)] }).to_string(),
            1 => json!({ "ec": P256_CERT.as_str() }).to_string(),
            _ => format!("{P256_SPKI}{RSA_SPKI}"),
        };
        let mut text = doc.clone();
        for edit in &edits {
            if text.is_empty() {
                break;
            }
            text = apply(&text, edit);
        }
        if let Ok(set) = KeySet::parse(text.as_bytes(), KeySource::Remote) {
            prop_assert!(set.keys().len() <= MAX_KEYS);
            // Whatever survived, a valid token verifies only with its own, intact key.
            for token in &tokens {
                if let Ok(key) = verify(Jwt::parse(token).unwrap().jws(), &set) {
                    let reference = KeySet::parse(doc.as_bytes(), KeySource::Remote).unwrap();
                    prop_assert!(
                        verify(Jwt::parse(token).unwrap().jws(), &reference).is_ok(),
                        "{key:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_count_limit_holds_for_any_count(count in 0..(MAX_KEYS + 40)) {
        static KEY: std::sync::LazyLock<Value> =
            std::sync::LazyLock::new(|| jwk(&p256(), "k", None));
        let keys: Vec<Value> = (0..count)
            .map(|i| {
                let mut key = KEY.clone();
                key["kid"] = json!(format!("k{i}"));
                key
            })
            .collect();
        let result = KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), KeySource::Remote);
        match result {
            Ok(set) => prop_assert!((1..=MAX_KEYS).contains(&count) && set.keys().len() == count),
            Err(JoseError::JwksTooManyKeys { count: c, limit }) => {
                prop_assert!(count > MAX_KEYS && c == count && limit == MAX_KEYS)
            }
            Err(JoseError::NoUsableKeys { .. }) => prop_assert_eq!(count, 0),
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }
}

/// A self-signed P-256 certificate, for the X.509 map format.
static P256_CERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::from_pem(P256_PKCS8).unwrap();
    rcgen::CertificateParams::new(vec!["x".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
});
