//! `authn`: ESP's JWT authentication decision for one request, as a pure function.
//!
//! What it does: compiles each method's `authentication` rule once per loaded config
//! ([`AuthPolicy::from_config`], [`MethodPolicy`]), then decides whether a request's JWTs
//! satisfy it ([`authenticate`]): it finds the tokens at the providers' `jwt_locations`, and runs
//! Envoy jwt_authn's checks in Envoy's order — parse, issuer known, time (`exp`/`nbf` with
//! skew), audience (ESPv2's scheme- and slash-insensitive comparison), key, signature — with
//! jwt_verify_lib's error messages and the gRPC/HTTP mapping ESP callers see ([`AuthError`]).
//! Any one requirement of a rule may validate a token; every token on the request must
//! validate. [`explain`] replays the same checks on one token, check by check, for
//! `esprit token inspect`.
//!
//! What it deliberately does not do: no sockets, no clock, no cache and no key fetching inside.
//! Key sets ([`KeySets`]), the verified-token cache ([`VerifiedTokens`]), `now` and the skew are
//! passed in by the proxy, which also decides when to refetch keys ([`AuthError::refetch_hint`]).
//! It does not parse tokens or verify signatures itself (that is `jose`), does not read
//! configuration files (that is `service-config`), and never logs or returns token contents in
//! errors. API keys are not its concern.

mod check;
mod error;
mod explain;
mod extract;
mod inputs;
mod policy;

use std::sync::Arc;

use http::{HeaderMap, Uri};
use service_config::{OnMissing, ProviderId};

pub use error::{AuthError, GrpcCode, Stage};
pub use explain::{CheckReport, CheckStatus, Explanation, explain};
pub use inputs::{
    AuthInputs, DEFAULT_SKEW, KeySets, NoCache, ProviderKeys, VerifiedToken, VerifiedTokens,
};
pub use policy::{AuthPolicy, MethodPolicy};

/// A request that may reach the backend ([`authenticate`]'s `Ok`; every rejection is an
/// [`AuthError`]).
#[derive(Clone, Debug)]
pub struct Allowed {
    /// Who the caller is: `None` when the method checks no JWT, or when no token was sent and
    /// the rule has `allow_without_credential`.
    pub principal: Option<Principal>,
}

/// Who a validated token says the caller is. Cheap to clone (shares the verified token).
#[derive(Clone, Debug)]
pub struct Principal {
    token: Arc<VerifiedToken>,
}

impl Principal {
    /// The provider whose requirement the token satisfied.
    pub fn provider(&self) -> &ProviderId {
        self.token.provider()
    }

    /// `iss` (always present: it matched the provider's issuer).
    pub fn issuer(&self) -> &str {
        self.token.jwt().claims().iss.as_deref().unwrap_or_default()
    }

    /// `sub`, when the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.token.jwt().claims().sub.as_deref()
    }

    /// The token's payload segment exactly as sent (base64url, no padding): what the proxy
    /// forwards as `X-Endpoint-API-UserInfo` (ESPv2).
    pub fn payload_segment(&self) -> &str {
        self.token.jwt().payload_segment()
    }

    /// [`Self::payload_segment`] as a header value, made once per verified token (a clone is a
    /// reference count, not a copy).
    pub fn userinfo(&self) -> Option<&http::HeaderValue> {
        self.token.userinfo()
    }

    /// All claims of the token.
    pub fn claims(&self) -> &jose::Claims {
        self.token.jwt().claims()
    }

    /// The verified token itself.
    pub fn verified_token(&self) -> &Arc<VerifiedToken> {
        &self.token
    }
}

/// Decides whether a request (its headers and URI) satisfies `policy`.
///
/// - A method without requirements is allowed with no principal; tokens are not looked at.
/// - Tokens are looked for at every location of the requirements' providers, in order. Every
///   token found must validate, each with a requirement whose provider lists the location it
///   was found at and whose issuer is the token's `iss`; any one such requirement suffices.
///   The principal is that of the first token.
/// - No token at all: "Jwt is missing", or allowed with no principal under
///   `allow_without_credential`. A present but invalid token is rejected either way.
///
/// Nothing is accepted on unverified data: claims are only used to reject until the
/// signature (or a verified-token cache entry for exactly this token and provider) vouches for
/// them.
pub fn authenticate(
    policy: &MethodPolicy,
    headers: &HeaderMap,
    uri: &Uri,
    inputs: &AuthInputs<'_>,
) -> Result<Allowed, AuthError> {
    let Some(on_missing) = policy.on_missing() else {
        return Ok(Allowed { principal: None });
    };
    let mut any_token = false;
    let mut first: Option<Arc<VerifiedToken>> = None;
    for location in &policy.locations {
        extract::for_each_token(&location.source, headers, uri, &mut |token| {
            any_token = true;
            let verified = check::verify_token(
                policy,
                token?,
                &location.requirements,
                inputs,
                &mut check::NoTrace,
            )?;
            first.get_or_insert(verified);
            Ok(())
        })?;
    }
    if !any_token {
        return match on_missing {
            OnMissing::Reject => Err(AuthError::Missing),
            OnMissing::Allow => Ok(Allowed { principal: None }),
        };
    }
    Ok(Allowed {
        principal: first.map(|token| Principal { token }),
    })
}
