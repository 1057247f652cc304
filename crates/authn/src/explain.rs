//! `explain`: why the proxy would accept or reject one token, check by check, for
//! `esprit token inspect`. It runs the very checks `authenticate` runs (through a trace), so
//! the two cannot disagree.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jose::{Jwt, MAX_TOKEN_BYTES, UnixTime};
use serde_json::Value;
use service_config::{AllowedCallers, Caller, CallerClaim, ProviderId};

use crate::check::{self, Outcome, Trace};
use crate::policy::{MethodPolicy, verified_email};
use crate::{AuthError, AuthInputs, KeySets, NoCache, Stage};

/// How one check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Not run, because an earlier check failed (or the method checks no JWT).
    Skipped,
}

/// One line of an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub stage: Stage,
    /// The requirement's provider, for the per-provider checks (time, audience, key,
    /// signature); `None` for per-token checks.
    pub provider: Option<ProviderId>,
    pub status: CheckStatus,
    /// For people: what was compared, or the error message.
    pub detail: String,
}

/// What [`explain`] found.
#[derive(Debug)]
pub struct Explanation {
    /// The decoded header, when it is base64url JSON (shown even if the token is refused).
    pub header: Option<Value>,
    /// The decoded payload, when it is base64url JSON (shown even if the token is refused).
    pub claims: Option<Value>,
    /// The checks in the order they ran; a requirement tried and failed is followed by the
    /// next requirement's checks.
    pub checks: Vec<CheckReport>,
    /// The provider that validated the token, `Ok(None)` when the method checks no JWT, or
    /// the error `authenticate` would return for this token.
    pub result: Result<Option<ProviderId>, AuthError>,
}

/// Runs `authenticate`'s checks on one `token` against `policy`, with no verified-token cache.
///
/// The token's location is not known here, so every requirement of the method is a candidate
/// (the proxy additionally requires that the token was found at a location of the validating
/// provider). Missing-token handling does not apply.
pub fn explain(
    token: &str,
    policy: &MethodPolicy,
    keys: &dyn KeySets,
    now: UnixTime,
    skew: Duration,
) -> Explanation {
    let token = token.trim();
    let (header, claims) = decode_for_display(token);
    let mut trace = ExplainTrace {
        policy,
        jwt: Jwt::parse(token).ok(),
        now,
        skew,
        checks: Vec::new(),
    };
    if !policy.requires_jwt() {
        trace.skip_after(
            None,
            None,
            "the method's rule has no requirements: no JWT check",
        );
        return Explanation {
            header,
            claims,
            checks: trace.checks,
            result: Ok(None),
        };
    }
    trace.checks.push(CheckReport {
        stage: Stage::Extract,
        provider: None,
        status: CheckStatus::Passed,
        detail: "token given directly; its location is not checked".to_owned(),
    });
    let candidates: Vec<usize> = (0..policy.requirements.len()).collect();
    let inputs = AuthInputs {
        keys,
        cache: &NoCache,
        now,
        skew,
    };
    let result = check::verify_token(policy, token, &candidates, &inputs, &mut trace)
        .map(|verified| Some(verified.provider().clone()));
    Explanation {
        header,
        claims,
        checks: trace.checks,
        result,
    }
}

fn decode_for_display(token: &str) -> (Option<Value>, Option<Value>) {
    if token.len() > MAX_TOKEN_BYTES {
        return (None, None);
    }
    let mut segments = token.split('.');
    let mut decode = || {
        let bytes = URL_SAFE_NO_PAD.decode(segments.next()?).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    let header = decode();
    let claims = decode();
    (header, claims)
}

struct ExplainTrace<'p> {
    policy: &'p MethodPolicy,
    /// The token parsed once more, only to describe passed checks.
    jwt: Option<Jwt>,
    now: UnixTime,
    skew: Duration,
    checks: Vec<CheckReport>,
}

impl ExplainTrace<'_> {
    fn provider(&self, requirement: Option<usize>) -> Option<ProviderId> {
        let requirement = self.policy.requirements.get(requirement?)?;
        Some(requirement.provider.clone())
    }

    /// Marks every stage after `after` (all stages when `None`) as skipped.
    fn skip_after(&mut self, after: Option<Stage>, requirement: Option<usize>, why: &str) {
        let provider = self.provider(requirement);
        for stage in Stage::ALL
            .into_iter()
            .filter(|s| after.is_none_or(|a| *s > a))
        {
            self.checks.push(CheckReport {
                stage,
                provider: provider.clone(),
                status: CheckStatus::Skipped,
                detail: why.to_owned(),
            });
        }
    }

    fn audiences(&self, requirement: Option<usize>) -> String {
        let accepted: Vec<&str> = requirement
            .and_then(|i| self.policy.requirements.get(i))
            .map(|r| r.configured_audiences.iter().map(|a| a.as_str()).collect())
            .unwrap_or_default();
        let aud = self.jwt.as_ref().map(|j| j.claims().aud.as_slice());
        format!(
            "aud {:?}; accepted (ignoring http(s):// and one trailing /): {accepted:?}",
            aud.unwrap_or_default()
        )
    }

    fn times(&self) -> String {
        let Some(jwt) = &self.jwt else {
            return String::new();
        };
        let claims = jwt.claims();
        let show = |t: Option<UnixTime>| match t {
            Some(t) => format!(
                "{} ({:+} s from now)",
                t.0,
                t.0 as i128 - self.now.0 as i128
            ),
            None => "absent".to_owned(),
        };
        format!(
            "exp {}, nbf {}; now {}, skew {} s",
            show(claims.exp),
            show(claims.nbf),
            self.now.0,
            self.skew.as_secs()
        )
    }

    fn passed_detail(&self, stage: Stage, requirement: Option<usize>) -> String {
        let header = self.jwt.as_ref().map(|j| j.header());
        let alg = header.map(|h| h.alg.name()).unwrap_or_default();
        let kid = header
            .and_then(|h| h.kid.as_ref())
            .map_or_else(|| "none".to_owned(), |k| format!("{:?}", k.as_str()));
        match stage {
            Stage::Extract => String::new(),
            Stage::Parse => format!("well-formed JWT, alg {alg}, kid {kid}"),
            Stage::Issuer => {
                let iss = self.jwt.as_ref().and_then(|j| j.claims().iss.as_deref());
                format!("iss {:?} is a configured issuer", iss.unwrap_or_default())
            }
            Stage::Time => self.times(),
            Stage::Audience => self.audiences(requirement),
            Stage::Key => format!("the provider's key set has a key for kid {kid} and alg {alg}"),
            Stage::Signature => format!("signature verified ({alg})"),
            Stage::Caller => self.callers(requirement),
        }
    }

    /// Who the token says the caller is, and whom the requirement accepts.
    fn callers(&self, requirement: Option<usize>) -> String {
        let Some(requirement) = requirement.and_then(|i| self.policy.requirements.get(i)) else {
            return String::new();
        };
        let AllowedCallers::Listed { claim, callers } = &requirement.callers else {
            return "every account of the provider may call (no x_esprit_allowed_callers)"
                .to_owned();
        };
        let listed: Vec<&str> = callers.iter().map(Caller::as_str).collect();
        let caller = match claim {
            CallerClaim::Issuer(account) => {
                format!("caller {account} (the provider's issuer: a single account)")
            }
            CallerClaim::VerifiedEmail => {
                let claims = self.jwt.as_ref().map(|j| &j.claims().all);
                let claim = |name: &str| {
                    claims
                        .and_then(|c| c.get(name))
                        .map_or_else(|| "absent".to_owned(), |v| v.to_string())
                };
                match self.jwt.as_ref().and_then(|j| verified_email(j.claims())) {
                    Some(caller) => format!("caller {caller} (verified email claim)"),
                    None => format!(
                        "email {}, email_verified {} (the caller must be a verified email)",
                        claim("email"),
                        claim("email_verified")
                    ),
                }
            }
        };
        format!("{caller}; allowed callers: {listed:?}")
    }
}

impl Trace for ExplainTrace<'_> {
    fn record(&mut self, stage: Stage, requirement: Option<usize>, outcome: Outcome<'_>) {
        let (status, detail) = match outcome {
            Outcome::Passed => (CheckStatus::Passed, self.passed_detail(stage, requirement)),
            Outcome::Cached => (CheckStatus::Passed, "verified-token cache hit".to_owned()),
            Outcome::Failed(error) => {
                let context = match stage {
                    Stage::Time => self.times(),
                    Stage::Audience => self.audiences(requirement),
                    Stage::Caller => self.callers(requirement),
                    Stage::Extract
                    | Stage::Parse
                    | Stage::Issuer
                    | Stage::Key
                    | Stage::Signature => String::new(),
                };
                let detail = if context.is_empty() {
                    error.to_string()
                } else {
                    format!("{error} ({context})")
                };
                (CheckStatus::Failed, detail)
            }
        };
        self.checks.push(CheckReport {
            stage,
            provider: self.provider(requirement),
            status,
            detail,
        });
        if status == CheckStatus::Failed {
            self.skip_after(Some(stage), requirement, "an earlier check failed");
        }
    }
}
