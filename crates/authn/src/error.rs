//! The one error type of this crate, the checks it names, and its mapping to the wire.

use jose::JoseError;
use service_config::ProviderId;

/// The checks of one token, in the order they run (Envoy's jwt_authn order). `Ord` follows
/// that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Finding tokens in the request.
    Extract,
    /// Size, the two dots, base64url, header and payload JSON, claim types.
    Parse,
    /// `iss` is the issuer of a provider the method accepts.
    Issuer,
    /// `exp` and `nbf` against `now`, with the clock skew.
    Time,
    /// `aud` against the requirement's audiences.
    Audience,
    /// A key set for the provider, and a key in it for the token's `kid` and `alg`.
    Key,
    /// The signature.
    Signature,
    /// The caller the verified token names is one the requirement accepts (esprit extension
    /// `x_esprit_allowed_callers`; passes trivially without it).
    Caller,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 8] = [
        Stage::Extract,
        Stage::Parse,
        Stage::Issuer,
        Stage::Time,
        Stage::Audience,
        Stage::Key,
        Stage::Signature,
        Stage::Caller,
    ];

    /// A short lowercase name for logs, metrics labels and `esprit token inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Extract => "extract",
            Stage::Parse => "parse",
            Stage::Issuer => "issuer",
            Stage::Time => "time",
            Stage::Audience => "audience",
            Stage::Key => "key",
            Stage::Signature => "signature",
            Stage::Caller => "caller",
        }
    }
}

/// The gRPC status codes a JWT failure maps to (tonic-free).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    /// 7.
    PermissionDenied = 7,
    /// 16.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code, as sent in `grpc-status`.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// Why a request was refused, one variant per failure a caller can tell apart.
///
/// **The `Display` messages are a contract**: the proxy sends them to clients verbatim (gRPC
/// status message, HTTP JSON body `{"code":…,"message":…}`), and they are google/jwt_verify_lib's
/// wording as listed in docs/esp-compatibility.md ("Errors callers see"). Errors from `jose` are wrapped
/// with their message unchanged. Change none of them without changing the tests that pin them.
/// Messages never contain token contents; [`AuthError::check_name`] and the provider id are
/// what to log.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token at any location the method's providers name, and the rule does not allow
    /// requests without credentials.
    #[error("Jwt is missing")]
    Missing,
    /// The token is not a well-formed JWT (too large, not three segments, bad base64url, bad
    /// JSON, an unsupported or missing `alg`, a claim of the wrong type, ...).
    #[error(transparent)]
    Malformed(JoseError),
    /// `iss` is absent, or is not the issuer of any provider the method accepts at the
    /// location the token was found.
    #[error("Jwt issuer is not configured")]
    IssuerNotConfigured,
    /// `exp` missing (when required), expired, or not yet valid (`nbf`).
    #[error("{error}")]
    Time {
        /// The provider whose issuer the token named (whose requirement checked the times).
        provider: ProviderId,
        /// What `jose::check_time` said; its message is this error's message.
        error: JoseError,
    },
    /// No `aud` of the token is one of the requirement's audiences. `PERMISSION_DENIED`.
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed {
        /// The provider whose issuer the token named (whose requirement lists the audiences).
        provider: ProviderId,
    },
    /// No key set has been obtained for the provider, or the last one is stale beyond the
    /// allowed maximum: fail closed.
    #[error("Jwks remote fetch is failed")]
    KeysNotFetched {
        /// The provider whose keys are missing.
        provider: ProviderId,
    },
    /// The key set has no key for the token's `kid` and `alg` ([`JoseError::KeyNotFound`]),
    /// or the token asks for HMAC against a remote key set ([`JoseError::AlgNotSupported`]).
    #[error("{error}")]
    Key {
        /// The provider whose key set was searched.
        provider: ProviderId,
        /// What `jose::verify` said; its message is this error's message.
        error: JoseError,
    },
    /// A key matched but the signature does not verify ([`JoseError::VerificationFailed`]).
    #[error("{error}")]
    Signature {
        /// The provider whose keys were tried.
        provider: ProviderId,
        /// What `jose::verify` said; its message is this error's message.
        error: JoseError,
    },
    /// esprit extension: the token is valid, but the account it names is not in the
    /// requirement's `x_esprit_allowed_callers`. `PERMISSION_DENIED`.
    #[error("Caller in Jwt is not allowed")]
    CallerNotAllowed {
        /// The provider whose requirement lists the callers.
        provider: ProviderId,
    },
    /// esprit extension: the requirement lists callers, the provider signs for many accounts,
    /// and the valid token has no `email` claim with `email_verified: true` (fail closed).
    /// `PERMISSION_DENIED`.
    #[error("Jwt has no verified email to identify the caller")]
    CallerUnidentified {
        /// The provider whose requirement lists the callers.
        provider: ProviderId,
    },
}

impl AuthError {
    /// The check that failed. Exhaustive on purpose: a new variant must say where it belongs.
    pub fn stage(&self) -> Stage {
        match self {
            AuthError::Missing => Stage::Extract,
            AuthError::Malformed(_) => Stage::Parse,
            AuthError::IssuerNotConfigured => Stage::Issuer,
            AuthError::Time { .. } => Stage::Time,
            AuthError::AudienceNotAllowed { .. } => Stage::Audience,
            AuthError::KeysNotFetched { .. } | AuthError::Key { .. } => Stage::Key,
            AuthError::Signature { .. } => Stage::Signature,
            AuthError::CallerNotAllowed { .. } | AuthError::CallerUnidentified { .. } => {
                Stage::Caller
            }
        }
    }

    /// The name of the failed check, for logs and metrics (never the token).
    pub fn check_name(&self) -> &'static str {
        self.stage().name()
    }

    /// The provider the failure is about: the one whose issuer the token named, for every
    /// check after the issuer's (time, audience, key, signature, caller). When several of the
    /// method's providers share that issuer, the one whose checks got furthest (the first in
    /// the method's requirements on a tie), as for the error itself. `None` before a provider
    /// is known (no token, a malformed one, an unknown issuer).
    pub fn provider(&self) -> Option<&ProviderId> {
        match self {
            AuthError::Time { provider, .. }
            | AuthError::AudienceNotAllowed { provider }
            | AuthError::KeysNotFetched { provider }
            | AuthError::Key { provider, .. }
            | AuthError::Signature { provider, .. }
            | AuthError::CallerNotAllowed { provider }
            | AuthError::CallerUnidentified { provider } => Some(provider),
            AuthError::Missing | AuthError::Malformed(_) | AuthError::IssuerNotConfigured => None,
        }
    }

    /// The provider whose key set the proxy should refetch (once, rate-limited) before calling
    /// `authenticate` again: the token's `kid` is not in the set (keys may have rotated), or no
    /// key set has been obtained yet. `None` for every other failure.
    pub fn refetch_hint(&self) -> Option<&ProviderId> {
        match self {
            AuthError::KeysNotFetched { provider } => Some(provider),
            AuthError::Key {
                provider,
                error: JoseError::KeyNotFound { .. },
            } => Some(provider),
            AuthError::Key { .. }
            | AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::IssuerNotConfigured
            | AuthError::Time { .. }
            | AuthError::AudienceNotAllowed { .. }
            | AuthError::Signature { .. }
            | AuthError::CallerNotAllowed { .. }
            | AuthError::CallerUnidentified { .. } => None,
        }
    }

    /// The token's `kid` when the key set had no key for it ([`JoseError::KeyNotFound`]): what
    /// the proxy refetches for. `None` for a token without `kid` and for every other failure.
    pub fn unknown_kid(&self) -> Option<&jose::Kid> {
        match self {
            AuthError::Key {
                error: JoseError::KeyNotFound { kid },
                ..
            } => kid.as_ref(),
            AuthError::Key { .. }
            | AuthError::KeysNotFetched { .. }
            | AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::IssuerNotConfigured
            | AuthError::Time { .. }
            | AuthError::AudienceNotAllowed { .. }
            | AuthError::Signature { .. }
            | AuthError::CallerNotAllowed { .. }
            | AuthError::CallerUnidentified { .. } => None,
        }
    }

    /// The gRPC status: `PERMISSION_DENIED` for a wrong audience and for a valid token whose
    /// caller is not accepted (esprit extension), `UNAUTHENTICATED` for the rest (docs/esp-compatibility.md, "Errors callers see"). The one place errors meet the wire; no
    /// `_` arm so that a new variant must be placed.
    pub fn code(&self) -> GrpcCode {
        match self {
            AuthError::AudienceNotAllowed { .. }
            | AuthError::CallerNotAllowed { .. }
            | AuthError::CallerUnidentified { .. } => GrpcCode::PermissionDenied,
            AuthError::Missing
            | AuthError::Malformed(_)
            | AuthError::IssuerNotConfigured
            | AuthError::Time { .. }
            | AuthError::KeysNotFetched { .. }
            | AuthError::Key { .. }
            | AuthError::Signature { .. } => GrpcCode::Unauthenticated,
        }
    }

    /// The HTTP status for HTTP callers: 403 with `PERMISSION_DENIED`, 401 otherwise.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            GrpcCode::PermissionDenied => 403,
            GrpcCode::Unauthenticated => 401,
        }
    }

    /// The `WWW-Authenticate` header value: `Bearer` when no token was sent,
    /// `Bearer, error="invalid_token"` when one was sent and refused (docs/esp-compatibility.md),
    /// `Bearer, error="insufficient_scope"` (RFC 6750 section 3.1: valid, but not enough for
    /// this resource) when a valid token's caller is not accepted.
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            AuthError::Missing => "Bearer",
            AuthError::CallerNotAllowed { .. } | AuthError::CallerUnidentified { .. } => {
                "Bearer, error=\"insufficient_scope\""
            }
            AuthError::Malformed(_)
            | AuthError::IssuerNotConfigured
            | AuthError::Time { .. }
            | AuthError::AudienceNotAllowed { .. }
            | AuthError::KeysNotFetched { .. }
            | AuthError::Key { .. }
            | AuthError::Signature { .. } => "Bearer, error=\"invalid_token\"",
        }
    }
}
