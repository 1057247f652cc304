//! The checks of one token, in Envoy's order: parse → issuer → time → audience → key →
//! signature. `authenticate` and `explain` both run exactly this code; `explain` watches it
//! through a [`Trace`].

use std::sync::Arc;

use jose::{JoseError, Jwt, MAX_TOKEN_BYTES};
use service_config::ProviderId;

use crate::policy::{CompiledRequirement, MethodPolicy};
use crate::{AuthError, AuthInputs, ProviderKeys, Stage, VerifiedToken, VerifiedTokens};

/// How one check ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome<'e> {
    Passed,
    /// Passed on the strength of the verified-token cache (parse, key, signature).
    Cached,
    Failed(&'e AuthError),
}

/// An observer of the checks. `requirement` is the index of the requirement a per-provider
/// check ran for (time, audience, key, signature), `None` for per-token checks.
pub(crate) trait Trace {
    fn record(&mut self, stage: Stage, requirement: Option<usize>, outcome: Outcome<'_>);
}

/// The trace of the hot path: records nothing, compiles to nothing.
pub(crate) struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn record(&mut self, _: Stage, _: Option<usize>, _: Outcome<'_>) {}
}

// Lives on the stack for one call; boxing the large variant would cost an allocation per token.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Cached(Arc<VerifiedToken>),
    Fresh(Jwt),
}

impl Parsed {
    fn jwt(&self) -> &Jwt {
        match self {
            Parsed::Cached(verified) => verified.jwt(),
            Parsed::Fresh(jwt) => jwt,
        }
    }

    fn cached_provider(&self) -> Option<&ProviderId> {
        match self {
            Parsed::Cached(verified) => Some(verified.provider()),
            Parsed::Fresh(_) => None,
        }
    }
}

/// Validates one token against the requirements whose indices are in `candidates` (those
/// accepting the location the token came from). Any one requirement may validate it; when
/// all fail, the error of the one that got furthest in the check order is returned (the first
/// of those on a tie), so a key-stage failure that a refetch could cure is not masked by an
/// earlier-stage failure of another provider.
pub(crate) fn verify_token<T: Trace>(
    policy: &MethodPolicy,
    token: &str,
    candidates: &[usize],
    inputs: &AuthInputs<'_>,
    trace: &mut T,
) -> Result<Arc<VerifiedToken>, AuthError> {
    let parsed = match parse(token, inputs.cache) {
        Ok(parsed) => parsed,
        Err(error) => {
            trace.record(Stage::Parse, None, Outcome::Failed(&error));
            return Err(error);
        }
    };
    let outcome = match parsed {
        Parsed::Cached(_) => Outcome::Cached,
        Parsed::Fresh(_) => Outcome::Passed,
    };
    trace.record(Stage::Parse, None, outcome);

    let jwt = parsed.jwt();
    let iss = jwt.claims().iss.as_deref();
    let mut issuer_known = false;
    let mut winner: Option<&CompiledRequirement> = None;
    let mut furthest: Option<AuthError> = None;
    for &index in candidates {
        let Some(requirement) = policy.requirements.get(index) else {
            continue;
        };
        if !requirement.accepts_issuer(iss) {
            continue;
        }
        if !issuer_known {
            issuer_known = true;
            trace.record(Stage::Issuer, None, Outcome::Passed);
        }
        match check_requirement(
            index,
            requirement,
            jwt,
            parsed.cached_provider(),
            inputs,
            trace,
        ) {
            Ok(()) => {
                winner = Some(requirement);
                break;
            }
            Err(error) => {
                if furthest.as_ref().is_none_or(|f| error.stage() > f.stage()) {
                    furthest = Some(error);
                }
            }
        }
    }
    let Some(requirement) = winner else {
        if let Some(error) = furthest {
            return Err(error);
        }
        let error = AuthError::IssuerNotConfigured;
        trace.record(Stage::Issuer, None, Outcome::Failed(&error));
        return Err(error);
    };

    let verified = match parsed {
        Parsed::Cached(verified) if verified.provider() == &requirement.provider => {
            return Ok(verified);
        }
        // Verified now with another provider's keys than the cached entry's.
        Parsed::Cached(verified) => {
            VerifiedToken::new(requirement.provider.clone(), verified.jwt().clone())
        }
        Parsed::Fresh(jwt) => VerifiedToken::new(requirement.provider.clone(), jwt),
    };
    let verified = Arc::new(verified);
    inputs.cache.put(token, Arc::clone(&verified));
    Ok(verified)
}

fn parse(token: &str, cache: &dyn VerifiedTokens) -> Result<Parsed, AuthError> {
    // Checked before the cache lookup so that an oversized token is never even hashed.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(JoseError::TooLarge {
            len: token.len(),
            limit: MAX_TOKEN_BYTES,
        }));
    }
    if let Some(verified) = cache.get(token) {
        return Ok(Parsed::Cached(verified));
    }
    Jwt::parse(token)
        .map(Parsed::Fresh)
        .map_err(AuthError::Malformed)
}

/// Time, audience, key, signature for one requirement. The claims read here are not yet
/// authenticated (unless `cached_provider` vouches for them): they can only cause a
/// rejection; acceptance needs the signature check at the end.
fn check_requirement<T: Trace>(
    index: usize,
    requirement: &CompiledRequirement,
    jwt: &Jwt,
    cached_provider: Option<&ProviderId>,
    inputs: &AuthInputs<'_>,
    trace: &mut T,
) -> Result<(), AuthError> {
    let at = Some(index);
    let claims = jwt.claims();
    let time =
        jose::check_time(claims, inputs.now, inputs.skew, requirement.exp).map_err(|error| {
            AuthError::Time {
                provider: requirement.provider.clone(),
                error,
            }
        });
    record(trace, Stage::Time, at, time)?;

    let audience = if requirement.accepts_audience(&claims.aud) {
        Ok(())
    } else {
        Err(AuthError::AudienceNotAllowed {
            provider: requirement.provider.clone(),
        })
    };
    record(trace, Stage::Audience, at, audience)?;

    // Fail closed without keys, even for a cached token: the keys may have been withdrawn.
    let keys = match inputs.keys.get(&requirement.provider) {
        ProviderKeys::Ready(keys) => keys,
        ProviderKeys::NotFetched => {
            let error = AuthError::KeysNotFetched {
                provider: requirement.provider.clone(),
            };
            return record(trace, Stage::Key, at, Err(error));
        }
    };
    if cached_provider == Some(&requirement.provider) {
        trace.record(Stage::Key, at, Outcome::Cached);
        trace.record(Stage::Signature, at, Outcome::Cached);
    } else {
        match jose::verify(jwt.jws(), &keys) {
            Ok(_) => {
                trace.record(Stage::Key, at, Outcome::Passed);
                trace.record(Stage::Signature, at, Outcome::Passed);
            }
            Err(error @ JoseError::VerificationFailed) => {
                trace.record(Stage::Key, at, Outcome::Passed);
                let error = AuthError::Signature {
                    provider: requirement.provider.clone(),
                    error,
                };
                return record(trace, Stage::Signature, at, Err(error));
            }
            Err(error) => {
                let error = AuthError::Key {
                    provider: requirement.provider.clone(),
                    error,
                };
                return record(trace, Stage::Key, at, Err(error));
            }
        }
    }

    // Only now are the claims vouched for (signature, or a cache entry for this provider), so
    // only now may they say who the caller is. Run on cache hits too: the same token may meet
    // another method whose requirement lists other callers.
    let caller = requirement.accepts_caller(claims);
    record(trace, Stage::Caller, at, caller)
}

fn record<T: Trace>(
    trace: &mut T,
    stage: Stage,
    requirement: Option<usize>,
    result: Result<(), AuthError>,
) -> Result<(), AuthError> {
    match &result {
        Ok(()) => trace.record(stage, requirement, Outcome::Passed),
        Err(error) => trace.record(stage, requirement, Outcome::Failed(error)),
    }
    result
}
