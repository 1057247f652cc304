//! `explain` check by check, and the mapping of every error to the wire.
#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use authn::{AuthError, CheckStatus, DEFAULT_SKEW, GrpcCode, Stage, explain};
use common::*;
use jose::{JoseError, Kid};
use serde_json::json;
use service_config::ProviderId;

/// `(stage, provider, status)` of each check, and the details.
fn lines(e: &authn::Explanation) -> Vec<(&'static str, Option<String>, CheckStatus)> {
    e.checks
        .iter()
        .map(|c| {
            (
                c.stage.name(),
                c.provider.as_ref().map(|p| p.as_str().to_owned()),
                c.status,
            )
        })
        .collect()
}

fn a() -> Option<String> {
    Some("a".to_owned())
}

#[test]
fn a_valid_token_passes_every_check_in_order() {
    use CheckStatus::Passed;
    let e = explain(
        &token(&claims()),
        method("ListShelves"),
        &key_sets(),
        NOW,
        DEFAULT_SKEW,
    );
    assert_eq!(
        lines(&e),
        vec![
            ("extract", None, Passed),
            ("parse", None, Passed),
            ("issuer", None, Passed),
            ("time", a(), Passed),
            ("audience", a(), Passed),
            ("key", a(), Passed),
            ("signature", a(), Passed),
            ("caller", a(), Passed),
        ]
    );
    assert_eq!(e.result.unwrap(), Some(ProviderId::new("a")));
    assert_eq!(
        e.header.unwrap(),
        json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"})
    );
    assert_eq!(e.claims.unwrap(), claims());
    assert_eq!(
        e.checks[1].detail,
        "well-formed JWT, alg RS256, kid \"rsa-1\""
    );
    assert_eq!(
        e.checks[3].detail,
        "exp 1700003600 (+3600 s from now), nbf absent; now 1700000000, skew 60 s"
    );
    // Without x_esprit_allowed_callers, inspect says plainly who may call.
    assert_eq!(
        e.checks[7].detail,
        "every account of the provider may call (no x_esprit_allowed_callers)"
    );
}

#[test]
fn an_expired_token_fails_time_and_skips_the_rest() {
    use CheckStatus::{Failed, Passed, Skipped};
    let expired = token(&claims_with(json!({"exp": NOW.0 - 61})));
    let e = explain(
        &expired,
        method("ListShelves"),
        &key_sets(),
        NOW,
        DEFAULT_SKEW,
    );
    assert_eq!(
        lines(&e),
        vec![
            ("extract", None, Passed),
            ("parse", None, Passed),
            ("issuer", None, Passed),
            ("time", a(), Failed),
            ("audience", a(), Skipped),
            ("key", a(), Skipped),
            ("signature", a(), Skipped),
            ("caller", a(), Skipped),
        ]
    );
    assert_eq!(
        e.checks[3].detail,
        "Jwt is expired (exp 1699999939 (-61 s from now), nbf absent; now 1700000000, skew 60 s)"
    );
    assert_eq!(e.result.unwrap_err().to_string(), "Jwt is expired");
}

#[test]
fn a_malformed_token_still_shows_what_decodes() {
    use CheckStatus::{Failed, Passed, Skipped};
    let bad_exp = token(&claims_with(json!({"exp": "tomorrow"})));
    let e = explain(
        &bad_exp,
        method("ListShelves"),
        &key_sets(),
        NOW,
        DEFAULT_SKEW,
    );
    assert_eq!(
        lines(&e),
        vec![
            ("extract", None, Passed),
            ("parse", None, Failed),
            ("issuer", None, Skipped),
            ("time", None, Skipped),
            ("audience", None, Skipped),
            ("key", None, Skipped),
            ("signature", None, Skipped),
            ("caller", None, Skipped),
        ]
    );
    assert_eq!(
        e.checks[1].detail,
        "Jwt payload [exp] field is not an integer"
    );
    assert_eq!(e.claims.unwrap()["exp"], json!("tomorrow"));
}

#[test]
fn any_of_shows_each_provider_tried() {
    use CheckStatus::{Failed, Passed, Skipped};
    // GetShelf accepts a or b; this token's issuer is b, so only b is tried, and fails on
    // the audience (b accepts https://b1.example.com/ and b2, not the service name).
    let b_token = token_by(b_key(), Some("b-1"), &claims_with(json!({"iss": ISS_B})));
    let e = explain(&b_token, method("GetShelf"), &key_sets(), NOW, DEFAULT_SKEW);
    let b = Some("b".to_owned());
    assert_eq!(
        lines(&e),
        vec![
            ("extract", None, Passed),
            ("parse", None, Passed),
            ("issuer", None, Passed),
            ("time", b.clone(), Passed),
            ("audience", b.clone(), Failed),
            ("key", b.clone(), Skipped),
            ("signature", b.clone(), Skipped),
            ("caller", b, Skipped),
        ]
    );
    assert_eq!(
        e.checks[4].detail,
        "Audiences in Jwt are not allowed (aud [\"bookstore.example.com\"]; accepted \
         (ignoring http(s):// and one trailing /): [\"https://b1.example.com/\", \"b2\"])"
    );
    assert_eq!(e.result.unwrap_err().code(), GrpcCode::PermissionDenied);
}

#[test]
fn a_method_without_requirements_checks_nothing() {
    let e = explain(
        "garbage",
        method("DeleteBook"),
        &key_sets(),
        NOW,
        DEFAULT_SKEW,
    );
    assert!(e.checks.iter().all(|c| c.status == CheckStatus::Skipped));
    assert_eq!(e.checks.len(), Stage::ALL.len());
    assert_eq!(e.result.unwrap(), None);
}

#[test]
fn every_error_maps_to_the_wire() {
    let p = || ProviderId::new("a");
    let invalid = "Bearer, error=\"invalid_token\"";
    // (error, grpc code, http status, WWW-Authenticate, check name, message)
    let table: Vec<(AuthError, u16, u16, &str, &str, &str)> = vec![
        (
            AuthError::Missing,
            16,
            401,
            "Bearer",
            "extract",
            "Jwt is missing",
        ),
        (
            AuthError::Malformed(JoseError::BadFormat),
            16,
            401,
            invalid,
            "parse",
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            AuthError::Malformed(JoseError::HeaderBadBase64),
            16,
            401,
            invalid,
            "parse",
            "Jwt header is an invalid Base64url encoded",
        ),
        (
            AuthError::IssuerNotConfigured,
            16,
            401,
            invalid,
            "issuer",
            "Jwt issuer is not configured",
        ),
        (
            AuthError::Time {
                provider: p(),
                error: JoseError::Expired,
            },
            16,
            401,
            invalid,
            "time",
            "Jwt is expired",
        ),
        (
            AuthError::Time {
                provider: p(),
                error: JoseError::NotYetValid,
            },
            16,
            401,
            invalid,
            "time",
            "Jwt not yet valid",
        ),
        (
            AuthError::AudienceNotAllowed { provider: p() },
            7,
            403,
            invalid,
            "audience",
            "Audiences in Jwt are not allowed",
        ),
        (
            AuthError::KeysNotFetched { provider: p() },
            16,
            401,
            invalid,
            "key",
            "Jwks remote fetch is failed",
        ),
        (
            AuthError::Key {
                provider: p(),
                error: JoseError::KeyNotFound {
                    kid: Some(Kid::from("k")),
                },
            },
            16,
            401,
            invalid,
            "key",
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        (
            AuthError::Signature {
                provider: p(),
                error: JoseError::VerificationFailed,
            },
            16,
            401,
            invalid,
            "signature",
            "Jwt verification fails",
        ),
        (
            AuthError::CallerNotAllowed { provider: p() },
            7,
            403,
            "Bearer, error=\"insufficient_scope\"",
            "caller",
            "Caller in Jwt is not allowed",
        ),
        (
            AuthError::CallerUnidentified { provider: p() },
            7,
            403,
            "Bearer, error=\"insufficient_scope\"",
            "caller",
            "Jwt has no verified email to identify the caller",
        ),
    ];
    for (error, code, http, www, check, message) in table {
        assert_eq!(error.code().as_u16(), code, "{error:?}");
        assert_eq!(error.http_status(), http, "{error:?}");
        assert_eq!(error.www_authenticate(), www, "{error:?}");
        assert_eq!(error.check_name(), check, "{error:?}");
        assert_eq!(error.to_string(), message, "{error:?}");
    }
}
