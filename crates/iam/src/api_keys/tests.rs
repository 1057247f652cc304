//! Key shape, prefixes, hashing, ids, names and the check answer's wire format.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use super::*;

#[test]
fn keys_look_like_googles_and_are_random() {
    let mut seen = HashSet::new();
    let mut chars_at = vec![HashSet::new(); API_KEY_LEN];
    for _ in 0..200 {
        let key = new_api_key().unwrap();
        assert_eq!(key.len(), 39, "{key}");
        assert!(key.starts_with("AIza"), "{key}");
        assert!(looks_like_api_key(&key), "{key}");
        for (i, c) in key.chars().enumerate() {
            chars_at[i].insert(c);
        }
        assert!(seen.insert(key));
    }
    // Every random position, the last included, takes many values over 200 keys (a
    // position fed by fewer bits, or a constant, would show here).
    for (i, set) in chars_at.iter().enumerate().skip(4) {
        assert!(
            set.len() > 30,
            "position {i} took only {} values",
            set.len()
        );
    }
    // The alphabet is base64url, all of it (7,000 random characters miss one of the 64
    // with probability about 64 * e^-109).
    let all: HashSet<char> = chars_at.iter().flatten().copied().collect();
    assert!(all.contains(&'-') && all.contains(&'_'));
    assert!(
        all.iter()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
    );
    assert_eq!(all.len(), 64);
}

#[test]
fn prefixes_show_eight_characters_at_most_a_quarter() {
    let key = "AIzaSyD-abcdefghijklmnopqrstuvwxyz01234";
    assert_eq!(key.len(), 39);
    assert_eq!(key_prefix(key), "AIzaSyD-");
    assert_eq!(key_prefix("short-secret"), "sho");
    assert_eq!(key_prefix("abc"), "");
    assert_eq!(key_prefix(""), "");
    assert_eq!(
        key_prefix("éééééééééééééééééééééééééééééééééééééééé"),
        "éééééééé"
    );
}

#[test]
fn the_hash_is_sha256_of_the_key() {
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let got: String = hash_api_key("abc")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn ids_are_uuid_v4() {
    let id = new_api_key_id().unwrap();
    assert_eq!(id.len(), 36);
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('4'));
    assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    assert_ne!(id, new_api_key_id().unwrap());
    assert!(!looks_like_api_key(&id));
}

#[test]
fn names_are_checked() {
    assert!(validate_api_key_name("Bookstore web client").is_ok());
    assert!(validate_api_key_name(&"n".repeat(63)).is_ok());
    for bad in ["", "  ", "a\nb", &"n".repeat(64)] {
        assert!(
            matches!(
                validate_api_key_name(bad),
                Err(IamError::InvalidApiKeyName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn check_answers_carry_only_the_contract() {
    let table = [
        (
            ApiKeyCheck::Valid {
                key_id: "k1".into(),
                consumer_project: "my-project".into(),
            },
            r#"{"valid":true,"consumer_project":"my-project"}"#,
        ),
        (ApiKeyCheck::Unknown, r#"{"valid":false}"#),
        (
            ApiKeyCheck::Revoked {
                key_id: "k2".into(),
            },
            r#"{"valid":false}"#,
        ),
    ];
    for (check, json) in table {
        assert_eq!(check.answer().to_json(), json, "{check:?}");
    }
}
