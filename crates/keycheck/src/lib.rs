//! The contract between the proxy and the key server (`esprit iam serve`) for one API-key check:
//! `POST /v1/services/{service}:check` with a [`CheckRequest`], answered 200 with a
//! [`CheckResponse`]. Both sides use these types; neither reads the other's JSON by hand.
//!
//! The caller authenticates with `Authorization: Bearer TOKEN` (required unless the key server
//! runs with `--check-auth off`): a JWT the caller signs with its service-account key file,
//! whose claims are [`caller_claims`] (`aud` = [`CALLER_AUDIENCE`], at most
//! [`MAX_CALLER_TOKEN_LIFETIME_SECS`]), or an access token of the key server's token service.
//! The key server answers 401 (with `WWW-Authenticate: Bearer`) to a missing or invalid token
//! and 403 to an account without `roles/servicemanagement.serviceController` on the service,
//! in Google's JSON error shape `{"error": {"code", "message", "status"}}`.
//!
//! What it deliberately does not hold: anything about how keys are stored (the proxy must not
//! link SQLite) or how the proxy caches answers. The answer says no more than the proxy needs:
//! valid or not, and the consumer project of a valid key. No key id and no reason (unknown or
//! revoked): the check endpoint may be reachable without credentials (`--check-auth off`), so it
//! must not be an oracle of which keys once existed.

use serde::{Deserialize, Serialize};

/// The longest API key either side looks up, in bytes. Google's keys are 39 characters (`AIza`
/// and 35 base64url characters); anything longer than this bound is not a key, and the proxy
/// refuses it as invalid before asking anyone.
pub const MAX_API_KEY_BYTES: usize = 128;

/// The longest consumer project a valid answer may carry, in bytes (Google's project ids are at
/// most 30 characters; the bound keeps a cached answer small).
pub const MAX_CONSUMER_PROJECT_BYTES: usize = 256;

/// The `aud` of a caller's self-signed JWT: fixed, not the key server's URL, so that one token
/// is good for every replica behind any address or TLS terminator (the store they share is the
/// trust domain). It is Google's Service Control endpoint, which ESP's checks go to.
pub const CALLER_AUDIENCE: &str = "https://servicecontrol.googleapis.com/";

/// The longest a caller's JWT may live (`exp - iat`), seconds: Google's one hour.
pub const MAX_CALLER_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Clock skew the key server allows on a caller JWT's `iat` and `exp`, seconds.
pub const CALLER_TOKEN_SKEW_SECS: u64 = 60;

/// The claims of a caller JWT for `email` issued at `iat` (seconds since the epoch), living
/// [`MAX_CALLER_TOKEN_LIFETIME_SECS`]: `iss` = `sub` = the account, `aud` = [`CALLER_AUDIENCE`].
pub fn caller_claims(email: &str, iat: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": email,
        "sub": email,
        "aud": CALLER_AUDIENCE,
        "iat": iat,
        "exp": iat.saturating_add(MAX_CALLER_TOKEN_LIFETIME_SECS),
    })
}

/// The path of the check endpoint for `service`, which the caller has percent-encoded.
pub fn check_path(encoded_service: &str) -> String {
    format!("/v1/services/{encoded_service}:check")
}

/// The request body: `{"api_key": KEY}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    pub api_key: String,
}

/// The answer: `{"valid": true, "consumer_project": PROJECT}` or `{"valid": false}`.
///
/// Parsing is strict about the verdict (a missing or non-boolean `valid`, or a valid answer
/// without a usable `consumer_project`, is an error) and lenient about other members, which are
/// ignored so that either side can be upgraded first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub enum CheckResponse {
    /// The key exists and is not revoked; it belongs to this project.
    Valid { consumer_project: String },
    /// Unknown, revoked, or not a key at all.
    Invalid,
}

impl CheckResponse {
    /// Whether the key may be used.
    pub fn is_valid(&self) -> bool {
        matches!(self, CheckResponse::Valid { .. })
    }

    /// The wire form, compact JSON.
    pub fn to_json(&self) -> String {
        // A bool and a string always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses an answer; an error means the answer carries no verdict.
    pub fn from_json(bytes: &[u8]) -> Result<CheckResponse, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer_project: Option<String>,
}

impl From<CheckResponse> for Wire {
    fn from(answer: CheckResponse) -> Wire {
        match answer {
            CheckResponse::Valid { consumer_project } => Wire {
                valid: true,
                consumer_project: Some(consumer_project),
            },
            CheckResponse::Invalid => Wire {
                valid: false,
                consumer_project: None,
            },
        }
    }
}

impl TryFrom<Wire> for CheckResponse {
    type Error = &'static str;

    fn try_from(wire: Wire) -> Result<CheckResponse, &'static str> {
        match (wire.valid, wire.consumer_project) {
            (false, _) => Ok(CheckResponse::Invalid),
            (true, None) => Err("a valid answer without consumer_project"),
            (true, Some(p)) if p.is_empty() || p.len() > MAX_CONSUMER_PROJECT_BYTES => {
                Err("a valid answer with an empty or over-long consumer_project")
            }
            (true, Some(consumer_project)) => Ok(CheckResponse::Valid { consumer_project }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_round_trip_and_carry_only_the_contract_fields() {
        let table = [
            (
                CheckResponse::Valid {
                    consumer_project: "my-project".into(),
                },
                r#"{"valid":true,"consumer_project":"my-project"}"#,
            ),
            (CheckResponse::Invalid, r#"{"valid":false}"#),
        ];
        for (answer, json) in table {
            assert_eq!(answer.to_json(), json);
            assert_eq!(CheckResponse::from_json(json.as_bytes()).unwrap(), answer);
        }
    }

    #[test]
    fn answers_without_a_verdict_are_errors() {
        let long = format!(
            r#"{{"valid":true,"consumer_project":"{}"}}"#,
            "p".repeat(MAX_CONSUMER_PROJECT_BYTES + 1)
        );
        for bad in [
            "{}",
            "[]",
            "null",
            "",
            "garbage",
            r#"{"valid":"true","consumer_project":"p"}"#,
            r#"{"valid":true}"#,
            r#"{"valid":true,"consumer_project":""}"#,
            r#"{"valid":true,"consumer_project":7}"#,
            r#"{"reason":"unknown"}"#,
            long.as_str(),
        ] {
            assert!(CheckResponse::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn older_answers_with_more_members_still_parse() {
        let old = r#"{"valid":false,"reason":"revoked","key_id":"k"}"#;
        assert_eq!(
            CheckResponse::from_json(old.as_bytes()).unwrap(),
            CheckResponse::Invalid
        );
        let old = r#"{"valid":true,"key_id":"k","consumer_project":"p"}"#;
        assert_eq!(
            CheckResponse::from_json(old.as_bytes()).unwrap(),
            CheckResponse::Valid {
                consumer_project: "p".into()
            }
        );
    }

    #[test]
    fn requests_are_one_member() {
        let request = CheckRequest {
            api_key: "AIzaX".into(),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"api_key":"AIzaX"}"#);
        assert_eq!(
            serde_json::from_str::<CheckRequest>(&json).unwrap(),
            request
        );
    }
}
