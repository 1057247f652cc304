//! Time checks on `exp` and `nbf`, with the caller's clock.

use std::time::Duration;

use crate::{Claims, JoseError};

/// Seconds since the Unix epoch. Callers read the clock; this crate never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

/// Whether a token without `exp` is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpRequirement {
    /// A token must carry `exp` (esprit's default; jwt_verify_lib does not require it).
    #[default]
    Required,
    /// A token without `exp` never expires.
    Optional,
}

/// Checks `exp` and `nbf` against `now`, allowing `skew` (whole seconds; ESP's default is
/// 60 s) either way:
/// - `exp` absent and required: [`JoseError::ExpMissing`];
/// - `now > exp + skew`: [`JoseError::Expired`] (so `now == exp + skew` still passes);
/// - `now + skew < nbf`: [`JoseError::NotYetValid`] (so `now + skew == nbf` passes).
///
/// `nbf` is checked before `exp`, in jwt_verify_lib's order.
pub fn check_time(
    claims: &Claims,
    now: UnixTime,
    skew: Duration,
    exp: ExpRequirement,
) -> Result<(), JoseError> {
    let skew = skew.as_secs();
    if let Some(nbf) = claims.nbf
        && now.0.saturating_add(skew) < nbf.0
    {
        return Err(JoseError::NotYetValid);
    }
    match claims.exp {
        Some(e) if now.0 > e.0.saturating_add(skew) => Err(JoseError::Expired),
        Some(_) => Ok(()),
        None if exp == ExpRequirement::Required => Err(JoseError::ExpMissing),
        None => Ok(()),
    }
}
