//! `jose`: JSON Web Signatures and Tokens for esprit, without I/O.
//!
//! What it does: parses compact JWS/JWT ([`Jws::parse`], [`Jwt::parse`]), parses key sets in the
//! three formats ESP accepts at a `jwks_uri` ([`KeySet::parse`]: a JWKS, Google's map of key id
//! to X.509 certificate, or PEM public keys), verifies a token's signature against a key set
//! ([`verify`], the model being google/jwt_verify_lib's `verifyJwt(jwt, jwks, now)`), checks
//! `exp`/`nbf` against a time the caller passes in ([`check_time`]), and signs tokens with
//! Google service-account key files or freshly generated keys ([`Signer`], [`ServiceAccountKey`],
//! [`generate_rsa_2048`], ...).
//!
//! What it deliberately does not do: no network, no clock (`now` is always an argument), no
//! caching, no tokio, and no crypto primitives of its own (aws-lc-rs does the maths). It knows
//! nothing of issuers, audiences or service configuration: those checks live in `authn`.
//!
//! Security rules enforced here: the algorithm comes from the key (a key's `kty`/`crv`/`alg`
//! must agree with the token's `alg`); `none` is never accepted; HMAC only with keys marked
//! [`KeySource::Local`]; header fields `jku`, `x5u`, `jwk` and `x5c` are never read; `crit` is
//! rejected; RSA keys below 2048 bits and ROCA-weak RSA keys are never used; base64url is
//! decoded strictly (no padding, no non-canonical trailing bits).

mod alg;
mod base64url;
mod error;
mod jws;
mod jwt;
mod key;
mod keygen;
mod keyset;
mod roca;
mod sign;
mod spki;
mod time;

pub use alg::Algorithm;
pub use error::{JoseError, SkipReason, SkippedKey, TimeClaim};
pub use jws::{Header, Jws, MAX_TOKEN_BYTES};
pub use jwt::{Claims, Jwt};
pub use key::{Key, PublicKey};
pub use keygen::{GeneratedKey, generate_ed25519, generate_es256, generate_rsa_2048};
pub use keyset::{KeySet, KeySource, MAX_CANDIDATES, MAX_KEYS, verify};
pub use sign::{ServiceAccountKey, Signer};
pub use time::{ExpRequirement, UnixTime, check_time};

use std::fmt;

/// A key id (`kid`), as found in a token header or a key set.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Kid(pub String);

impl Kid {
    /// The key id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({:?})", self.0)
    }
}

impl From<&str> for Kid {
    fn from(s: &str) -> Self {
        Kid(s.to_owned())
    }
}
