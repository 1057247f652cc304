//! `check_time`: boundaries exact to the second.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::time::Duration;

use common::NOW;
use jose::{Claims, ExpRequirement, UnixTime, check_time};

const SKEW: Duration = Duration::from_secs(60);

fn claims(exp: Option<u64>, nbf: Option<u64>) -> Claims {
    Claims {
        exp: exp.map(UnixTime),
        nbf: nbf.map(UnixTime),
        ..Claims::default()
    }
}

#[test]
fn time_table() {
    let n = NOW.0;
    let req = ExpRequirement::Required;
    let opt = ExpRequirement::Optional;
    type Case = (
        &'static str,
        Claims,
        Duration,
        ExpRequirement,
        Result<(), &'static str>,
    );
    let cases: Vec<Case> = vec![
        ("valid", claims(Some(n + 3600), None), SKEW, req, Ok(())),
        ("exp == now", claims(Some(n), None), SKEW, req, Ok(())),
        (
            "exp + skew == now",
            claims(Some(n - 60), None),
            SKEW,
            req,
            Ok(()),
        ),
        (
            "exp + skew + 1 == now",
            claims(Some(n - 61), None),
            SKEW,
            req,
            Err("Jwt is expired"),
        ),
        (
            "no skew: exp == now",
            claims(Some(n), None),
            Duration::ZERO,
            req,
            Ok(()),
        ),
        (
            "no skew: exp + 1 == now",
            claims(Some(n - 1), None),
            Duration::ZERO,
            req,
            Err("Jwt is expired"),
        ),
        (
            "sub-second skew is whole seconds",
            claims(Some(n - 1), None),
            Duration::from_millis(999),
            req,
            Err("Jwt is expired"),
        ),
        (
            "nbf == now + skew",
            claims(Some(n + 3600), Some(n + 60)),
            SKEW,
            req,
            Ok(()),
        ),
        (
            "nbf == now + skew + 1",
            claims(Some(n + 3600), Some(n + 61)),
            SKEW,
            req,
            Err("Jwt not yet valid"),
        ),
        (
            "nbf in the past",
            claims(Some(n + 3600), Some(n - 1000)),
            SKEW,
            req,
            Ok(()),
        ),
        (
            "no skew: nbf == now",
            claims(Some(n + 1), Some(n)),
            Duration::ZERO,
            req,
            Ok(()),
        ),
        (
            "no skew: nbf == now + 1",
            claims(Some(n + 1), Some(n + 1)),
            Duration::ZERO,
            req,
            Err("Jwt not yet valid"),
        ),
        (
            "exp missing, required",
            claims(None, None),
            SKEW,
            req,
            Err("Jwt payload [exp] field is required"),
        ),
        (
            "exp missing, optional",
            claims(None, None),
            SKEW,
            opt,
            Ok(()),
        ),
        (
            "exp missing, optional, nbf future",
            claims(None, Some(n + 61)),
            SKEW,
            opt,
            Err("Jwt not yet valid"),
        ),
        (
            "exp 0",
            claims(Some(0), None),
            SKEW,
            req,
            Err("Jwt is expired"),
        ),
        (
            "exp u64::MAX with skew does not overflow",
            claims(Some(u64::MAX), None),
            SKEW,
            req,
            Ok(()),
        ),
        (
            "nbf u64::MAX",
            claims(Some(u64::MAX), Some(u64::MAX)),
            SKEW,
            req,
            Err("Jwt not yet valid"),
        ),
    ];
    for (desc, c, skew, exp, want) in cases {
        let got = check_time(&c, NOW, skew, exp).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_string), "{desc}");
    }
    // now near u64::MAX: now + skew saturates instead of wrapping.
    let far = UnixTime(u64::MAX - 1);
    assert!(check_time(&claims(Some(u64::MAX), Some(5)), far, SKEW, req).is_ok());
}

#[test]
fn parsed_tokens_feed_check_time() {
    let signer = common::rsa();
    let mut c = common::claims();
    c["exp"] = (NOW.0 - 61).into();
    let token = signer
        .sign_jwt(Some("k"), jose::Algorithm::RS256, &c)
        .unwrap();
    let jwt = jose::Jwt::parse(&token).unwrap();
    let err = check_time(jwt.claims(), NOW, SKEW, ExpRequirement::Required).unwrap_err();
    assert_eq!(err.to_string(), "Jwt is expired");
    assert_eq!(err.variant_name(), "Expired");
}
