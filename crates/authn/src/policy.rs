//! The authentication policy of each method, compiled once when a config is loaded.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use jose::ExpRequirement;
use service_config::{
    AllowedCallers, Audience, Caller, CallerClaim, ExpClaim, JwtLocation, Method, OnMissing,
    ProviderId, ServiceConfig,
};

use crate::AuthError;

/// Every method's [`MethodPolicy`], by gRPC path. Build it once per loaded config and swap it
/// with the config on reload.
#[derive(Debug, Default)]
pub struct AuthPolicy {
    methods: HashMap<String, Arc<MethodPolicy>>,
}

impl AuthPolicy {
    /// Compiles the policy of every method of `config`.
    pub fn from_config(config: &ServiceConfig) -> AuthPolicy {
        let methods = config
            .methods()
            .iter()
            .map(|m| (m.grpc_path.clone(), Arc::new(MethodPolicy::new(m, config))))
            .collect();
        AuthPolicy { methods }
    }

    /// The policy of the method a gRPC path (`/pkg.Service/Method`) calls; `None` when the
    /// path is not a method of the config.
    pub fn method(&self, grpc_path: &str) -> Option<&Arc<MethodPolicy>> {
        self.methods.get(grpc_path)
    }

    /// Every method's policy, by gRPC path.
    pub fn methods(&self) -> impl Iterator<Item = (&str, &Arc<MethodPolicy>)> {
        self.methods
            .iter()
            .map(|(path, policy)| (path.as_str(), policy))
    }
}

/// What one method requires of a request's JWTs: its requirements (any one may validate a
/// token), where tokens are looked for, and what a request without a token gets. Immutable;
/// header names are parsed and audiences normalized here, not per request.
#[derive(Debug)]
pub struct MethodPolicy {
    selector: String,
    /// `None`: the method's rule has no requirements, so no JWT check at all.
    on_missing: Option<OnMissing>,
    pub(crate) requirements: Vec<CompiledRequirement>,
    /// The union of the locations of the requirements' providers, in provider order, each
    /// listed once with the requirements that accept tokens from it.
    pub(crate) locations: Vec<CompiledLocation>,
}

impl MethodPolicy {
    /// Compiles `method`'s authentication. `config` supplies the providers.
    ///
    /// A requirement naming a provider that `config` lacks (service-config refuses such configs,
    /// so this cannot happen with a loaded config) fails closed: it stays, can never be
    /// satisfied, and contributes no token location.
    pub fn new(method: &Method, config: &ServiceConfig) -> MethodPolicy {
        let Some(auth) = &method.auth else {
            return MethodPolicy {
                selector: method.selector.as_str().to_owned(),
                on_missing: None,
                requirements: Vec::new(),
                locations: Vec::new(),
            };
        };
        let mut requirements = Vec::with_capacity(auth.requirements.len());
        let mut locations: Vec<CompiledLocation> = Vec::new();
        for (index, requirement) in auth.requirements.iter().enumerate() {
            let provider = config.provider(&requirement.provider_id);
            requirements.push(CompiledRequirement {
                provider: requirement.provider_id.clone(),
                issuer: provider.map(|p| p.issuer.as_str().to_owned()),
                exp: match provider.map(|p| p.exp) {
                    Some(ExpClaim::Optional) => ExpRequirement::Optional,
                    Some(ExpClaim::Required) | None => ExpRequirement::Required,
                },
                audiences: requirement
                    .audiences
                    .iter()
                    .map(|a| normalize_audience(a.as_str()).to_owned())
                    .collect(),
                configured_audiences: requirement.audiences.clone(),
                callers: requirement.allowed_callers.clone(),
            });
            for location in provider
                .map(|p| p.jwt_locations.as_slice())
                .unwrap_or_default()
            {
                let source = TokenSource::new(location);
                match locations.iter_mut().find(|l| l.source == source) {
                    Some(existing) => {
                        if !existing.requirements.contains(&index) {
                            existing.requirements.push(index);
                        }
                    }
                    None => locations.push(CompiledLocation {
                        source,
                        requirements: vec![index],
                    }),
                }
            }
        }
        MethodPolicy {
            selector: method.selector.as_str().to_owned(),
            on_missing: Some(auth.on_missing),
            requirements,
            locations,
        }
    }

    /// The method's selector, for logs.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Whether the method checks JWTs at all (its rule has requirements).
    pub fn requires_jwt(&self) -> bool {
        self.on_missing.is_some()
    }

    /// What a request without any token gets; `None` when the method checks no JWT.
    pub fn on_missing(&self) -> Option<OnMissing> {
        self.on_missing
    }

    /// The providers of the requirements, in order (one entry per requirement).
    pub fn providers(&self) -> impl Iterator<Item = &ProviderId> {
        self.requirements.iter().map(|r| &r.provider)
    }
}

/// One requirement, ready for the hot path.
#[derive(Debug)]
pub(crate) struct CompiledRequirement {
    pub(crate) provider: ProviderId,
    /// `None` when the provider is unknown: never matches.
    pub(crate) issuer: Option<String>,
    pub(crate) exp: ExpRequirement,
    /// Normalized with [`normalize_audience`]; never empty for a loaded config.
    pub(crate) audiences: Vec<String>,
    /// As configured, for `explain`.
    pub(crate) configured_audiences: Vec<Audience>,
    /// esprit extension `x_esprit_allowed_callers`.
    pub(crate) callers: AllowedCallers,
}

impl CompiledRequirement {
    /// Exact issuer match (Envoy).
    pub(crate) fn accepts_issuer(&self, iss: Option<&str>) -> bool {
        matches!((self.issuer.as_deref(), iss), (Some(want), Some(got)) if want == got)
    }

    /// The caller check (esprit extension `x_esprit_allowed_callers`), on claims a signature
    /// or a cache entry for this provider has vouched for:
    /// - without a list, every account passes (ESP);
    /// - a single-account issuer (`iss` is an email): the caller is that account, whatever
    ///   `email` the token carries (the account writes that claim itself);
    /// - an issuer for many accounts: the caller is `email`, only with `email_verified: true`
    ///   (a JSON boolean); a token without both is refused, not let through.
    ///
    /// Emails compare with the domain case-insensitive and the local part exact
    /// ([`Caller::parse`] normalizes both sides).
    pub(crate) fn accepts_caller(&self, claims: &jose::Claims) -> Result<(), AuthError> {
        let AllowedCallers::Listed { claim, callers } = &self.callers else {
            return Ok(());
        };
        let accepted = match claim {
            CallerClaim::Issuer(account) => callers.contains(account),
            CallerClaim::VerifiedEmail => {
                let Some(caller) = verified_email(claims) else {
                    return Err(AuthError::CallerUnidentified {
                        provider: self.provider.clone(),
                    });
                };
                callers.contains(&caller)
            }
        };
        if accepted {
            Ok(())
        } else {
            Err(AuthError::CallerNotAllowed {
                provider: self.provider.clone(),
            })
        }
    }

    /// Whether any of the token's `aud` values is one of the requirement's audiences, both
    /// sides compared after [`normalize_audience`].
    pub(crate) fn accepts_audience(&self, aud: &[String]) -> bool {
        aud.iter().any(|got| {
            let got = normalize_audience(got);
            self.audiences.iter().any(|want| want == got)
        })
    }
}

/// The token's `email` when `email_verified` is the JSON boolean `true` (Google's ID tokens; a
/// string `"true"` is not accepted) and the email is a plausible account address.
pub(crate) fn verified_email(claims: &jose::Claims) -> Option<Caller> {
    if claims.all.get("email_verified") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    Caller::parse(claims.all.get("email")?.as_str()?)
}

/// jwt_verify_lib's `sanitizeAudience`: strips one leading `http://` or `https://` (exact
/// case) and one trailing `/`, so `bookstore.example.com`, `https://bookstore.example.com` and
/// `https://bookstore.example.com/` compare equal. ESPv2 configures `https://<service name>`
/// as the default audience; service-config gives the bare name, this makes them meet.
pub(crate) fn normalize_audience(aud: &str) -> &str {
    let rest = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    rest.strip_suffix('/').unwrap_or(rest)
}

/// A token location and the requirements (indices) whose providers list it. A token found
/// there may only be validated by those requirements (Envoy's `isIssuerAllowed`).
#[derive(Debug)]
pub(crate) struct CompiledLocation {
    pub(crate) source: TokenSource,
    pub(crate) requirements: Vec<usize>,
}

/// Where a token is read from, precomputed for lookups.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Header { name: HeaderKey, prefix: Prefix },
    Query { name: String },
}

impl TokenSource {
    fn new(location: &JwtLocation) -> TokenSource {
        match location {
            JwtLocation::Header { name, value_prefix } => TokenSource::Header {
                name: HeaderKey::new(name),
                prefix: match value_prefix.as_deref() {
                    None | Some("") => Prefix::None,
                    // RFC 6750 section 2.1 / RFC 9110 section 11.1: the auth scheme is
                    // case-insensitive, so `bearer xyz` is a bearer token too.
                    Some(p) if p.eq_ignore_ascii_case("bearer ") => {
                        Prefix::CaseInsensitive("bearer ".to_owned())
                    }
                    Some(p) => Prefix::Exact(p.to_owned()),
                },
            },
            JwtLocation::Query { name } => TokenSource::Query { name: name.clone() },
        }
    }
}

/// A header name. service-config accepts only RFC 9110 tokens, which always parse; the raw
/// form (lowercased, compared by iterating the headers) keeps this infallible anyway.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderKey {
    Name(HeaderName),
    Raw(String),
}

impl HeaderKey {
    fn new(name: &str) -> HeaderKey {
        let lower = name.to_ascii_lowercase();
        match HeaderName::from_bytes(lower.as_bytes()) {
            Ok(name) => HeaderKey::Name(name),
            Err(_) => HeaderKey::Raw(lower),
        }
    }
}

/// A header value prefix (`value_prefix`), matched exactly except the bearer scheme.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    None,
    Exact(String),
    /// Stored lowercase.
    CaseInsensitive(String),
}

#[cfg(test)]
mod tests {
    use super::normalize_audience;

    #[test]
    fn audiences_normalize_like_jwt_verify_lib() {
        let cases = [
            ("bookstore.example.com", "bookstore.example.com"),
            ("https://bookstore.example.com", "bookstore.example.com"),
            ("http://bookstore.example.com/", "bookstore.example.com"),
            ("https://bookstore.example.com//", "bookstore.example.com/"),
            (
                "HTTPS://bookstore.example.com",
                "HTTPS://bookstore.example.com",
            ),
            ("https://https://x", "https://x"),
            ("/", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_audience(input), want, "{input:?}");
        }
    }
}
