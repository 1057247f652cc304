//! Who is asking for an API-key check: the caller's bearer token → an account email, or a typed
//! refusal. Pure: the account's keys and `now` are arguments; the key server looks them up.
//!
//! Two kinds of token are accepted (ESP authenticates to Service Control with an OAuth access
//! token of its service account; esprit accepts either):
//! - an access token of the key server's token service (`esprit-at.…`, `iam serve
//!   --issuer-url`), looked up by the server, with the `servicecontrol` or `cloud-platform`
//!   scope;
//! - a JWT the account signs with its key file: `iss` = `sub` = the account email, `aud` =
//!   [`keycheck::CALLER_AUDIENCE`], `kid` one of the account's *enabled key-file keys* (not the
//!   server-managed keys `signJwt` uses), `exp - iat` at most one hour, 60 s of skew.
//!
//! The JWT checks run in Envoy's order and nothing is read from the claims before the signature
//! verified: issuer present, key (`kid` among the issuer's keys; the algorithm comes from the
//! key), signature, audience, times, subject.

use std::borrow::Cow;

use jose::Jwt;
use keycheck::{CALLER_AUDIENCE, CALLER_TOKEN_SKEW_SECS, MAX_CALLER_TOKEN_LIFETIME_SECS};

use crate::iam_credentials::Unauthenticated;
use crate::model::StoredKey;
use crate::token::ACCESS_TOKEN_PREFIX;
use crate::token::assertion::{KeyMismatch, verify_with_stored_key};

/// Whether the key server asks callers of the check endpoint for credentials.
#[derive(Clone, Debug)]
pub enum CheckAuth {
    /// Anyone may ask (esprit before this setting; `iam serve --check-auth off`).
    Off,
    /// A caller needs a valid token of an account holding
    /// `roles/servicemanagement.serviceController` on the checked service; token times are
    /// read from this clock.
    Required(clock::SharedClock),
}

impl CheckAuth {
    /// [`CheckAuth::Required`] on the system clock.
    pub fn required() -> CheckAuth {
        CheckAuth::Required(clock::system())
    }

    /// `now` by the clock, when required.
    pub(crate) fn now(&self) -> Option<u64> {
        match self {
            CheckAuth::Off => None,
            CheckAuth::Required(clock) => Some(clock.unix_secs()),
        }
    }
}

/// The scopes an access token needs to call the check: Google's Service Control scope, or
/// `cloud-platform`.
pub const CHECK_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/servicecontrol",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// Why a caller is refused. [`CallerRefusal::status`] and [`CallerRefusal::message`] are the
/// contract (401 for every credential problem, 403 for a token without a check scope); the
/// messages never quote the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerRefusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// Neither an access token nor a JWT (this crate's parse error).
    Malformed(String),
    /// An access token that is unknown, expired, of a deleted account, or given to a key
    /// server without a token service.
    InvalidAccessToken,
    /// An access token without [`CHECK_SCOPES`].
    InsufficientScopes,
    /// A JWT without `iss`.
    MissingIssuer,
    /// `kid` missing, or not an enabled key-file key of the account `iss` names (also when there
    /// is no such account: the answer does not tell which accounts exist).
    UnknownKey,
    /// The signature does not verify with the key.
    BadSignature,
    /// `aud` is not exactly [`CALLER_AUDIENCE`].
    WrongAudience,
    /// `iat` or `exp` missing.
    MissingTimes,
    /// `exp` past, `iat` in the future (beyond the skew), or `exp - iat` over an hour.
    BadTimes,
    /// `sub` missing or not `iss`.
    WrongSubject,
}

impl CallerRefusal {
    /// 401, but 403 for [`CallerRefusal::InsufficientScopes`].
    pub fn status(&self) -> u16 {
        match self {
            CallerRefusal::InsufficientScopes => 403,
            CallerRefusal::Missing
            | CallerRefusal::Malformed(_)
            | CallerRefusal::InvalidAccessToken
            | CallerRefusal::MissingIssuer
            | CallerRefusal::UnknownKey
            | CallerRefusal::BadSignature
            | CallerRefusal::WrongAudience
            | CallerRefusal::MissingTimes
            | CallerRefusal::BadTimes
            | CallerRefusal::WrongSubject => 401,
        }
    }

    /// A short name for the log line.
    pub fn reason(&self) -> &'static str {
        match self {
            CallerRefusal::Missing => "missing",
            CallerRefusal::Malformed(_) => "malformed",
            CallerRefusal::InvalidAccessToken => "invalid-access-token",
            CallerRefusal::InsufficientScopes => "insufficient-scopes",
            CallerRefusal::MissingIssuer => "missing-iss",
            CallerRefusal::UnknownKey => "unknown-key",
            CallerRefusal::BadSignature => "bad-signature",
            CallerRefusal::WrongAudience => "wrong-audience",
            CallerRefusal::MissingTimes => "missing-times",
            CallerRefusal::BadTimes => "bad-times",
            CallerRefusal::WrongSubject => "wrong-subject",
        }
    }

    /// The message the caller sees.
    pub fn message(&self) -> Cow<'static, str> {
        const INVALID: &str = "Request had invalid authentication credentials";
        let detail = match self {
            CallerRefusal::Missing => return Cow::Borrowed(Unauthenticated::Missing.message()),
            CallerRefusal::InvalidAccessToken => {
                return Cow::Borrowed(Unauthenticated::Invalid.message());
            }
            CallerRefusal::InsufficientScopes => {
                return Cow::Borrowed(crate::iam_credentials::INSUFFICIENT_SCOPES);
            }
            CallerRefusal::Malformed(why) => {
                return Cow::Owned(format!("{INVALID}: not an access token nor a JWT ({why})"));
            }
            CallerRefusal::MissingIssuer => "JWT iss is required (the service account's email)",
            CallerRefusal::UnknownKey => {
                "JWT kid is not an enabled key of the service account named by iss"
            }
            CallerRefusal::BadSignature => "invalid JWT signature",
            CallerRefusal::WrongAudience => {
                return Cow::Owned(format!("{INVALID}: JWT aud must be {CALLER_AUDIENCE}"));
            }
            CallerRefusal::MissingTimes => "JWT iat and exp are required",
            CallerRefusal::BadTimes => {
                "JWT must be short-lived (exp - iat at most 3600 s) and current (exp not past, \
                 iat not in the future)"
            }
            CallerRefusal::WrongSubject => "JWT sub must equal iss",
        };
        Cow::Owned(format!("{INVALID}: {detail}"))
    }
}

/// A bearer token, classified (nothing verified yet).
#[derive(Clone, Debug)]
pub enum CallerToken {
    /// A token-service access token, to be looked up.
    AccessToken(String),
    /// A JWT, to be verified against the keys of the account its `iss` names.
    Jwt(Box<Jwt>),
}

impl CallerToken {
    /// Classifies `bearer` (the value after `Bearer `).
    pub fn parse(bearer: &str) -> Result<CallerToken, CallerRefusal> {
        if bearer.starts_with(ACCESS_TOKEN_PREFIX) {
            return Ok(CallerToken::AccessToken(bearer.to_owned()));
        }
        Jwt::parse(bearer)
            .map(|jwt| CallerToken::Jwt(Box::new(jwt)))
            .map_err(|e| CallerRefusal::Malformed(e.to_string()))
    }
}

/// The unverified `iss` of `jwt`: whose keys to look up.
pub fn claimed_issuer(jwt: &Jwt) -> Result<&str, CallerRefusal> {
    jwt.claims()
        .iss
        .as_deref()
        .ok_or(CallerRefusal::MissingIssuer)
}

/// Verifies a caller's self-signed JWT against `keys` (the enabled key-file keys of the account
/// its `iss` names; empty when there is no such account) at `now`; the account email.
pub fn verify_caller_jwt(jwt: &Jwt, keys: &[StoredKey], now: u64) -> Result<String, CallerRefusal> {
    let iss = claimed_issuer(jwt)?;
    let kid = jwt.header().kid.as_ref().ok_or(CallerRefusal::UnknownKey)?;
    let candidates = keys
        .iter()
        .filter(|k| k.key_id == kid.as_str() && k.email == iss);
    verify_with_stored_key(jwt, candidates).map_err(|err| match err {
        KeyMismatch::UnknownKey => CallerRefusal::UnknownKey,
        KeyMismatch::BadSignature => CallerRefusal::BadSignature,
    })?;
    let claims = jwt.claims();
    if claims.aud.len() != 1 || claims.aud[0] != CALLER_AUDIENCE {
        return Err(CallerRefusal::WrongAudience);
    }
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(CallerRefusal::MissingTimes);
    };
    let expired = now > exp.0.saturating_add(CALLER_TOKEN_SKEW_SECS);
    let future = iat.0 > now.saturating_add(CALLER_TOKEN_SKEW_SECS);
    let too_long = exp.0 < iat.0 || exp.0 - iat.0 > MAX_CALLER_TOKEN_LIFETIME_SECS;
    if expired || future || too_long {
        return Err(CallerRefusal::BadTimes);
    }
    if claims.sub.as_deref() != Some(iss) {
        return Err(CallerRefusal::WrongSubject);
    }
    Ok(iss.to_owned())
}

/// Whether an access token issued for `scopes` may call the check.
pub fn has_check_scope(scopes: &[String]) -> bool {
    scopes.iter().any(|s| CHECK_SCOPES.contains(&s.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::keyfile::new_key;
    use crate::model::{Account, KeyAlgorithm, KeyServerUrl};

    const NOW: u64 = 1_800_000_000;
    const EMAIL: &str = "proxy-one@my-project.iam.gserviceaccount.com";

    fn account(email: &str) -> Account {
        Account {
            email: email.into(),
            account_id: email.split('@').next().unwrap().into(),
            project_id: "my-project".into(),
            unique_id: "100000000000000000001".into(),
            created: 0,
        }
    }

    fn jwt(token: &str) -> Jwt {
        match CallerToken::parse(token).unwrap() {
            CallerToken::Jwt(jwt) => *jwt,
            CallerToken::AccessToken(_) => panic!("not a JWT"),
        }
    }

    #[test]
    fn caller_jwts() {
        let rsa = new_key(
            &account(EMAIL),
            KeyAlgorithm::Rs256,
            &KeyServerUrl::default(),
            0,
        )
        .unwrap();
        let ec = new_key(
            &account(EMAIL),
            KeyAlgorithm::Es256,
            &KeyServerUrl::default(),
            0,
        )
        .unwrap();
        let signer = jose::Signer::from_service_account(&rsa.key_file).unwrap();
        let ec_signer = jose::Signer::from_service_account(&ec.key_file).unwrap();
        let kid = rsa.stored.key_id.clone();
        let keys = vec![rsa.stored.clone(), ec.stored.clone()];
        let base = keycheck::caller_claims(EMAIL, NOW);
        let with = |changes: serde_json::Value| {
            let mut claims = base.clone();
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            claims
        };
        let sign = |claims: &serde_json::Value| {
            signer
                .sign_jwt(Some(&kid), jose::Algorithm::RS256, claims)
                .unwrap()
        };
        let good = sign(&base);
        assert_eq!(
            verify_caller_jwt(&jwt(&good), &keys, NOW).unwrap(),
            EMAIL.to_owned()
        );
        // The EC key file verifies with its own kid; the algorithm comes from the key.
        let ec_token = ec_signer
            .sign_jwt(Some(&ec.stored.key_id), jose::Algorithm::ES256, &base)
            .unwrap();
        assert!(verify_caller_jwt(&jwt(&ec_token), &keys, NOW).is_ok());

        use CallerRefusal::*;
        let other = "other-two@my-project.iam.gserviceaccount.com";
        let table: Vec<(&str, String, &[StoredKey], u64, CallerRefusal)> = vec![
            (
                "no iss",
                sign(&with(json!({"iss": null}))),
                &keys,
                NOW,
                MissingIssuer,
            ),
            (
                "unknown account: no keys",
                good.clone(),
                &[],
                NOW,
                UnknownKey,
            ),
            (
                "iss names another account than the keys'",
                sign(&with(json!({"iss": other, "sub": other}))),
                &keys,
                NOW,
                UnknownKey,
            ),
            (
                "no kid",
                signer
                    .sign_jwt(None, jose::Algorithm::RS256, &base)
                    .unwrap(),
                &keys,
                NOW,
                UnknownKey,
            ),
            (
                "unknown kid",
                signer
                    .sign_jwt(Some(&"f".repeat(40)), jose::Algorithm::RS256, &base)
                    .unwrap(),
                &keys,
                NOW,
                UnknownKey,
            ),
            (
                "signed by the EC key under the RSA key's kid",
                ec_signer
                    .sign_jwt(Some(&kid), jose::Algorithm::ES256, &base)
                    .unwrap(),
                &keys,
                NOW,
                BadSignature,
            ),
            (
                "wrong audience: the token endpoint",
                sign(&with(json!({"aud": "https://oauth2.googleapis.com/token"}))),
                &keys,
                NOW,
                WrongAudience,
            ),
            (
                "wrong audience: without the trailing slash",
                sign(&with(
                    json!({"aud": "https://servicecontrol.googleapis.com"}),
                )),
                &keys,
                NOW,
                WrongAudience,
            ),
            (
                "two audiences",
                sign(&with(json!({"aud": [CALLER_AUDIENCE, "x"]}))),
                &keys,
                NOW,
                WrongAudience,
            ),
            (
                "no exp",
                sign(&with(json!({"exp": null}))),
                &keys,
                NOW,
                MissingTimes,
            ),
            (
                "no iat",
                sign(&with(json!({"iat": null}))),
                &keys,
                NOW,
                MissingTimes,
            ),
            ("expired", good.clone(), &keys, NOW + 3600 + 61, BadTimes),
            (
                "issued in the future",
                good.clone(),
                &keys,
                NOW - 61,
                BadTimes,
            ),
            (
                "lives over an hour",
                sign(&with(json!({"exp": NOW + 3601}))),
                &keys,
                NOW,
                BadTimes,
            ),
            (
                "exp before iat",
                sign(&with(json!({"exp": NOW - 1}))),
                &keys,
                NOW,
                BadTimes,
            ),
            (
                "no sub",
                sign(&with(json!({"sub": null}))),
                &keys,
                NOW,
                WrongSubject,
            ),
            (
                "sub is another account",
                sign(&with(json!({"sub": other}))),
                &keys,
                NOW,
                WrongSubject,
            ),
        ];
        for (name, token, keys, now, want) in table {
            assert_eq!(
                verify_caller_jwt(&jwt(&token), keys, now),
                Err(want),
                "{name}"
            );
        }
        // Within the skew on both ends.
        assert!(verify_caller_jwt(&jwt(&good), &keys, NOW + 3600 + 60).is_ok());
        assert!(verify_caller_jwt(&jwt(&good), &keys, NOW - 60).is_ok());
        // A tampered signature. The first signature character carries six
        // whole bits, so any other letter is still valid base64url; the last
        // one may carry padding bits, where a change can make it malformed.
        let start = good.rfind('.').unwrap() + 1;
        let first = &good[start..=start];
        let tampered = format!(
            "{}{}{}",
            &good[..start],
            if first == "A" { "B" } else { "A" },
            &good[start + 1..]
        );
        assert!(matches!(
            verify_caller_jwt(&jwt(&tampered), &keys, NOW),
            Err(BadSignature)
        ));
    }

    #[test]
    fn classification_statuses_and_messages() {
        assert!(matches!(
            CallerToken::parse("esprit-at.abc").unwrap(),
            CallerToken::AccessToken(t) if t == "esprit-at.abc"
        ));
        assert!(matches!(
            CallerToken::parse("garbage"),
            Err(CallerRefusal::Malformed(_))
        ));
        assert_eq!(CallerRefusal::InsufficientScopes.status(), 403);
        assert_eq!(CallerRefusal::BadSignature.status(), 401);
        assert_eq!(
            CallerRefusal::WrongAudience.message(),
            "Request had invalid authentication credentials: JWT aud must be \
             https://servicecontrol.googleapis.com/"
        );
        assert!(has_check_scope(&[
            "https://www.googleapis.com/auth/servicecontrol".into()
        ]));
        assert!(!has_check_scope(&[
            "https://www.googleapis.com/auth/iam".into()
        ]));
    }
}
