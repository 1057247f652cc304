//! Tokens signed in the test with a service-account key file, as the tutorial's `generate-jwt.py`
//! makes them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A one-hour token signed with `key_file`: `iss` = `sub` = `issuer`, `aud` = `audience`, and
/// `jti` (so a caller can make every token one no cache has seen).
pub fn sign_with_key_file(key_file: &Path, issuer: &str, audience: &str, jti: &str) -> String {
    sign_with_key_file_and(key_file, issuer, audience, &[("jti", jti)])
}

/// [`sign_with_key_file`] with `extra` string claims instead of `jti` (an RFC 7523 assertion's
/// `scope` or `target_audience`, as google-auth puts them in the JWT).
pub fn sign_with_key_file_and(
    key_file: &Path,
    issuer: &str,
    audience: &str,
    extra: &[(&str, &str)],
) -> String {
    let json = std::fs::read_to_string(key_file).unwrap();
    let account = jose::ServiceAccountKey::from_json(&json).unwrap();
    let signer = jose::Signer::from_service_account(&account).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": issuer, "sub": issuer, "aud": audience, "iat": now, "exp": now + 3600,
    });
    for (name, value) in extra {
        claims[*name] = serde_json::Value::from(*value);
    }
    signer
        .sign_jwt(
            Some(&account.private_key_id),
            signer.default_algorithm(),
            &claims,
        )
        .unwrap()
}
