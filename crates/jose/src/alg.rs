//! The JWS algorithms esprit accepts (RFC 7518 section 3, RFC 8037).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::{hmac, signature};

use crate::JoseError;

/// A JWS `alg`. `none` has no variant: it can never be named, so it can never be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256; only with [`crate::KeySource::Local`] keys.
    HS256,
    /// HMAC with SHA-384; only with [`crate::KeySource::Local`] keys.
    HS384,
    /// HMAC with SHA-512; only with [`crate::KeySource::Local`] keys.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// EdDSA on Ed25519.
    EdDSA,
}

/// Key families, as the JWK `kty` (and `crv` for curves) names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec(Curve),
    Ed25519,
}

/// The NIST curves for ECDSA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// The JWK `crv` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Length of one coordinate in bytes (RFC 7518 section 6.2.1.2).
    pub(crate) fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
            Curve::P521 => Algorithm::ES512,
        }
    }
}

impl Algorithm {
    /// Every algorithm, for iteration in tests and key compatibility.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The registered name, as it appears in a header's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether this is an HMAC (symmetric) algorithm.
    pub fn is_hmac(self) -> bool {
        self.family() == Family::Hmac
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 => Family::Ec(Curve::P256),
            Algorithm::ES384 => Family::Ec(Curve::P384),
            Algorithm::ES512 => Family::Ec(Curve::P521),
            Algorithm::EdDSA => Family::Ed25519,
        }
    }

    /// HMAC: the aws-lc-rs algorithm and the minimum key length (the hash output length,
    /// RFC 7518 section 3.2).
    pub(crate) fn hmac(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            Algorithm::HS256 => Some((hmac::HMAC_SHA256, 32)),
            Algorithm::HS384 => Some((hmac::HMAC_SHA384, 48)),
            Algorithm::HS512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }

    /// Public-key algorithms: the aws-lc-rs verification algorithm. RSA accepts moduli of
    /// 2048 to 8192 bits; ECDSA takes the fixed-width `r || s` encoding JWS uses.
    pub(crate) fn verification(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
        })
    }

    /// RSA parameters for [`Algorithm::verification`] when the family is RSA.
    pub(crate) fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    /// RSA signing encodings.
    pub(crate) fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_SHA512,
            _ => return None,
        })
    }
}

impl FromStr for Algorithm {
    type Err = JoseError;

    /// Exact, case-sensitive match on the registered names. `none`, `None`, `NONE` and every
    /// unknown name are [`JoseError::AlgNotSupported`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or(JoseError::AlgNotSupported)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
