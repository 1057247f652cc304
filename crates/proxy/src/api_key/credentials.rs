//! The proxy's credentials for the key server (`--service-account-key FILE`, ESP's flag): a
//! Google service-account key file, read once at start, that signs the JWT sent as
//! `Authorization: Bearer` with every check (`keycheck::caller_claims`: `iss` = `sub` = the
//! account, `aud` = `keycheck::CALLER_AUDIENCE`, one hour). One signature serves every check
//! until [`RESIGN_BEFORE_EXPIRY_SECS`] before it expires.
//!
//! Never logged: `Debug` shows the account and key id only, and the cached header is marked
//! sensitive.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use http::HeaderValue;
use jose::{ServiceAccountKey, Signer};
use keycheck::MAX_CALLER_TOKEN_LIFETIME_SECS;

/// A token is re-signed this long before it expires, seconds (well above the key server's
/// 60 s of skew, so a slow clock on either side does not make it look expired).
pub const RESIGN_BEFORE_EXPIRY_SECS: u64 = 300;

/// Whether a token issued at `iat` must be replaced at `now`: close to its expiry, or issued
/// in the future by this clock (the clock went back).
pub(crate) fn needs_resign(iat: u64, now: u64) -> bool {
    let refresh_at = iat.saturating_add(MAX_CALLER_TOKEN_LIFETIME_SECS - RESIGN_BEFORE_EXPIRY_SECS);
    now >= refresh_at || now < iat
}

/// A service account's signing key and its last signed token.
pub struct CallerCredentials {
    email: String,
    kid: String,
    algorithm: jose::Algorithm,
    signer: Signer,
    /// The `Authorization` value and its `iat`.
    cached: Mutex<Option<(HeaderValue, u64)>>,
}

impl std::fmt::Debug for CallerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerCredentials")
            .field("email", &self.email)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl CallerCredentials {
    /// Reads and checks the key file at `path`. The error is the operator's message (it never
    /// quotes the file).
    pub fn load(path: &Path) -> Result<CallerCredentials, String> {
        let fail = |why: String| format!("--service-account-key {}: {why}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let key = ServiceAccountKey::from_json(&text).map_err(|e| fail(e.to_string()))?;
        CallerCredentials::from_key(&key).map_err(fail)
    }

    /// Credentials of a parsed key file: the private key must load, the email and key id be
    /// present.
    pub fn from_key(key: &ServiceAccountKey) -> Result<CallerCredentials, String> {
        if key.client_email.trim().is_empty() {
            return Err("[client_email] is empty".into());
        }
        if key.private_key_id.trim().is_empty() {
            return Err("[private_key_id] is empty".into());
        }
        let signer = Signer::from_service_account(key)
            .map_err(|e| format!("[private_key] cannot be used to sign: {e}"))?;
        let credentials = CallerCredentials {
            email: key.client_email.clone(),
            kid: key.private_key_id.clone(),
            algorithm: signer.default_algorithm(),
            signer,
            cached: Mutex::new(None),
        };
        // A key that cannot sign fails now, not at the first check.
        credentials.sign(0)?;
        Ok(credentials)
    }

    /// The service account's email.
    pub fn email(&self) -> &str {
        &self.email
    }

    fn sign(&self, iat: u64) -> Result<HeaderValue, String> {
        let claims = keycheck::caller_claims(&self.email, iat);
        let token = self
            .signer
            .sign_jwt(Some(&self.kid), self.algorithm, &claims)
            .map_err(|e| format!("signing the key server token failed: {e}"))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the signed token is not a header value".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The `Authorization` header value at `now` (seconds since the epoch): the cached token,
    /// or a new one when it is close to expiry.
    pub(crate) fn authorization(&self, now: u64) -> Result<HeaderValue, String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((value, iat)) = cached.as_ref()
            && !needs_resign(*iat, now)
        {
            return Ok(value.clone());
        }
        let value = self.sign(now)?;
        *cached = Some((value.clone(), now));
        Ok(value)
    }
}

/// What the log says when the key server refuses the proxy (401/403): its status, its message
/// (from Google's error JSON, bounded) and what to do.
pub(crate) fn refusal_message(
    status: http::StatusCode,
    body: &[u8],
    credentials: Option<&CallerCredentials>,
) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let message: String = message.chars().take(300).collect();
    let hint = match credentials {
        None => "start the proxy with --service-account-key FILE of an account holding \
                 roles/servicemanagement.serviceController on the service"
            .to_owned(),
        Some(c) => format!(
            "grant serviceAccount:{} roles/servicemanagement.serviceController on the service \
             (esprit iam roles grant)",
            c.email
        ),
    };
    format!(
        "the key server refused the proxy's credentials (HTTP {status}: {}); {hint}",
        message.escape_debug()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_resigned_before_expiry_and_when_the_clock_goes_back() {
        let iat = 1_800_000_000;
        for (now, want) in [
            (iat, false),
            (iat + 3299, false),
            (iat + 3300, true),
            (iat + 3600, true),
            (iat - 1, true),
        ] {
            assert_eq!(needs_resign(iat, now), want, "{now}");
        }
    }

    #[test]
    fn refusals_say_what_to_grant() {
        let body = br#"{"error":{"code":403,"message":"Permission denied: serviceAccount:p@x does not hold roles/servicemanagement.serviceController on services/s","status":"PERMISSION_DENIED"}}"#;
        let credentials = CallerCredentials::from_key(&key_file()).unwrap();
        let text = refusal_message(http::StatusCode::FORBIDDEN, body, Some(&credentials));
        assert!(text.starts_with("the key server refused the proxy's credentials (HTTP 403 Forbidden: Permission denied: serviceAccount:p@x"), "{text}");
        assert!(text.contains("grant serviceAccount:proxy-one@my-project.iam.gserviceaccount.com roles/servicemanagement.serviceController"), "{text}");
        let text = refusal_message(http::StatusCode::UNAUTHORIZED, b"<html>\n", None);
        assert!(text.contains("HTTP 401 Unauthorized: )"), "{text}");
        assert!(text.contains("--service-account-key FILE"), "{text}");
    }

    fn key_file() -> ServiceAccountKey {
        let generated = jose::generate_es256().unwrap();
        ServiceAccountKey::new_google(
            "my-project",
            "proxy-one@my-project.iam.gserviceaccount.com",
            "1",
            "k1",
            &generated.private_pkcs8_pem,
        )
    }

    fn claims(value: &HeaderValue) -> serde_json::Value {
        let token = value.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        jose::Jwt::parse(token).unwrap().claims().all.clone().into()
    }

    #[test]
    fn one_signature_serves_until_close_to_expiry() {
        let credentials = CallerCredentials::from_key(&key_file()).unwrap();
        let iat = 1_800_000_000;
        let first = credentials.authorization(iat).unwrap();
        assert!(first.is_sensitive());
        assert_eq!(credentials.authorization(iat + 3299).unwrap(), first);
        let claims_first = claims(&first);
        assert_eq!(
            claims_first,
            keycheck::caller_claims("proxy-one@my-project.iam.gserviceaccount.com", iat)
        );
        let second = credentials.authorization(iat + 3300).unwrap();
        assert_ne!(second, first);
        assert_eq!(claims(&second)["iat"], iat + 3300);
        assert_eq!(claims(&second)["exp"], iat + 3300 + 3600);
        // The Debug form names the account, never the key.
        let debug = format!("{credentials:?}");
        assert!(
            debug.contains("proxy-one@") && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }

    #[test]
    fn bad_key_files_are_refused_with_the_flag_and_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut no_key = key_file();
        no_key.private_key =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let mut no_email = key_file();
        no_email.client_email = String::new();
        let cases: Vec<(&str, Option<String>, &str)> = vec![
            ("missing", None, "No such file"),
            (
                "not-json",
                Some("{\"private_key\": \"SECRET\"".into()),
                "not the JSON",
            ),
            (
                "bad-key",
                Some(no_key.to_json()),
                "[private_key] cannot be used to sign",
            ),
            (
                "no-email",
                Some(no_email.to_json()),
                "[client_email] is empty",
            ),
        ];
        for (name, content, want) in cases {
            let path = dir.join(format!("{name}.json"));
            if let Some(content) = content {
                std::fs::write(&path, content).unwrap();
            }
            let err = CallerCredentials::load(&path).unwrap_err();
            assert!(err.starts_with("--service-account-key "), "{err}");
            assert!(err.contains(want), "{name}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
        let good = dir.join("good.json");
        std::fs::write(&good, key_file().to_json()).unwrap();
        CallerCredentials::load(&good).unwrap();
    }
}
