//! The one error type of this crate.

use std::fmt;

use crate::Kid;

/// A time claim of a JWT payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeClaim {
    /// `exp`, expiration time.
    Exp,
    /// `nbf`, not before.
    Nbf,
    /// `iat`, issued at.
    Iat,
}

impl fmt::Display for TimeClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeClaim::Exp => "exp",
            TimeClaim::Nbf => "nbf",
            TimeClaim::Iat => "iat",
        })
    }
}

/// Every failure this crate reports, one variant per failure a caller can tell apart.
///
/// **The `Display` messages are a contract**: callers send them to clients verbatim (gRPC
/// status message, HTTP JSON body), and they are google/jwt_verify_lib's wording wherever
/// jwt_verify_lib has the same failure, so ESP users recognise them. Messages of failures that
/// jwt_verify_lib does not have are marked "(esprit)". Change none of them without changing
/// the tests that pin them. Messages never contain token contents.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    /// The token is larger than [`crate::MAX_TOKEN_BYTES`]. (esprit)
    #[error("Jwt is too large ({len} bytes; the limit is {limit} bytes)")]
    TooLarge {
        /// Length of the token in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not three segments separated by exactly two dots.
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// The header segment is not strict base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    /// The header is not a JSON object (or repeats a member this crate reads).
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    /// `alg` is missing or not a string.
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `alg` names no algorithm this crate accepts (`none` included), or an HMAC algorithm
    /// against a remote key set.
    #[error("Jwt header [alg] is not supported")]
    AlgNotSupported,
    /// `kid` is present but not a string.
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    /// `crit` is present: this crate implements no extension, so it must reject (RFC 7515
    /// section 4.1.11). (esprit)
    #[error("Jwt header [crit] field names an extension that is not supported")]
    CritNotSupported,
    /// The payload segment is not strict base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    /// The payload is not a JSON object (or repeats a registered claim).
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    /// `iss` is present but not a string.
    #[error("Jwt payload [iss] field is not a string")]
    IssNotString,
    /// `sub` is present but not a string.
    #[error("Jwt payload [sub] field is not a string")]
    SubNotString,
    /// `aud` is present but neither a string nor a list of strings.
    #[error("Jwt payload [aud] field is not a string or string list")]
    AudNotString,
    /// `exp`, `nbf` or `iat` is present but not a JSON integer (a float or a string is this
    /// error, never "absent").
    #[error("Jwt payload [{0}] field is not an integer")]
    NotInteger(TimeClaim),
    /// `exp`, `nbf` or `iat` is a negative integer.
    #[error("Jwt payload [{0}] field is not a positive integer")]
    NotPositive(TimeClaim),
    /// The signature segment is not strict base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    /// `exp` is absent and the caller requires it. jwt_verify_lib does not require `exp`;
    /// esprit does by default. (esprit)
    #[error("Jwt payload [exp] field is required")]
    ExpMissing,
    /// `now > exp + skew`.
    #[error("Jwt is expired")]
    Expired,
    /// `now + skew < nbf`.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// A key matched but the signature does not verify with any matching key.
    #[error("Jwt verification fails")]
    VerificationFailed,
    /// No key of the set has the token's `kid` (when it has one) and an algorithm compatible
    /// with its `alg`. The proxy may refetch the key set on this error.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    KeyNotFound {
        /// The token's `kid`, if it had one.
        kid: Option<Kid>,
    },
    /// The key set is neither JSON nor PEM, or its JSON is malformed.
    #[error("Jwks is an invalid JSON")]
    JwksBadJson,
    /// A JSON key set that is neither `{"keys": [...]}` nor a map of key id to certificate.
    #[error("Jwks does not have [keys] field")]
    JwksNoKeys,
    /// `keys` is not an array.
    #[error("[keys] in Jwks is not an array")]
    JwksBadKeys,
    /// The key set lists more than [`crate::MAX_KEYS`] keys; it is refused whole. (esprit)
    #[error("Jwks has {count} keys; at most {limit} are accepted")]
    JwksTooManyKeys {
        /// How many keys (JWKS entries, certificates or PEM blocks) it lists.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The key set parsed but not one key is usable; `skipped` says why for each.
    #[error("Jwks doesn't have any valid public key")]
    NoUsableKeys {
        /// Every key of the set, with the reason it was not used.
        skipped: Vec<SkippedKey>,
    },
    /// A PEM document could not be decoded.
    #[error("PEM pubkey parse fails")]
    PemBadEncoding,
    /// A service-account key file is not the JSON Google issues. (esprit)
    #[error("service account key file is invalid: {0}")]
    ServiceAccountKeyInvalid(&'static str),
    /// A private key is not PKCS#8 RSA, ECDSA P-256/P-384 or Ed25519. (esprit)
    #[error("private key is not a supported PKCS#8 RSA, EC P-256, EC P-384 or Ed25519 key")]
    PrivateKeyUnsupported,
    /// Signing with an algorithm the key cannot produce. (esprit)
    #[error("signing algorithm {0} does not match the key")]
    SigningAlgorithmMismatch(crate::Algorithm),
    /// The crypto library failed to sign or to generate a key. (esprit)
    #[error("crypto operation failed: {0}")]
    Crypto(&'static str),
}

impl JoseError {
    /// The variant's name, for logs and metrics labels (never the token).
    pub fn variant_name(&self) -> &'static str {
        match self {
            JoseError::TooLarge { .. } => "TooLarge",
            JoseError::BadFormat => "BadFormat",
            JoseError::HeaderBadBase64 => "HeaderBadBase64",
            JoseError::HeaderBadJson => "HeaderBadJson",
            JoseError::HeaderBadAlg => "HeaderBadAlg",
            JoseError::AlgNotSupported => "AlgNotSupported",
            JoseError::HeaderBadKid => "HeaderBadKid",
            JoseError::CritNotSupported => "CritNotSupported",
            JoseError::PayloadBadBase64 => "PayloadBadBase64",
            JoseError::PayloadBadJson => "PayloadBadJson",
            JoseError::IssNotString => "IssNotString",
            JoseError::SubNotString => "SubNotString",
            JoseError::AudNotString => "AudNotString",
            JoseError::NotInteger(_) => "NotInteger",
            JoseError::NotPositive(_) => "NotPositive",
            JoseError::SignatureBadBase64 => "SignatureBadBase64",
            JoseError::ExpMissing => "ExpMissing",
            JoseError::Expired => "Expired",
            JoseError::NotYetValid => "NotYetValid",
            JoseError::VerificationFailed => "VerificationFailed",
            JoseError::KeyNotFound { .. } => "KeyNotFound",
            JoseError::JwksBadJson => "JwksBadJson",
            JoseError::JwksNoKeys => "JwksNoKeys",
            JoseError::JwksBadKeys => "JwksBadKeys",
            JoseError::JwksTooManyKeys { .. } => "JwksTooManyKeys",
            JoseError::NoUsableKeys { .. } => "NoUsableKeys",
            JoseError::PemBadEncoding => "PemBadEncoding",
            JoseError::ServiceAccountKeyInvalid(_) => "ServiceAccountKeyInvalid",
            JoseError::PrivateKeyUnsupported => "PrivateKeyUnsupported",
            JoseError::SigningAlgorithmMismatch(_) => "SigningAlgorithmMismatch",
            JoseError::Crypto(_) => "Crypto",
        }
    }
}

/// Why a key of a key set was not made usable. Callers log these (with the kid) so operators
/// see a partly broken key set; the `Display` text is for logs, not for clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The JWK has no string `kty`.
    MissingKty,
    /// `kty` (or the SPKI algorithm, or the PEM label) is not one this crate verifies with.
    UnsupportedKty(String),
    /// `crv` is missing or not supported for the key type.
    UnsupportedCurve(String),
    /// `alg` names an algorithm this crate does not accept.
    UnsupportedAlg(String),
    /// `alg` contradicts the key type or curve (e.g. `ES521` on a P-256 key).
    AlgKeyMismatch(String),
    /// `use` is not `sig`, or `key_ops` lacks `verify`.
    NotForSignature,
    /// An HMAC (`oct`) key from a remote key set: HMAC keys are accepted only when local.
    HmacFromRemote,
    /// An HMAC key shorter than the hash output of every algorithm it could serve.
    HmacKeyTooShort(usize),
    /// An RSA modulus outside 2048..=8192 bits.
    RsaKeySize(usize),
    /// An RSA public exponent that is even or below 3.
    RsaBadExponent,
    /// An RSA modulus with the ROCA fingerprint (CVE-2017-15361): its factors are computable.
    RsaRoca,
    /// A member is missing, not a string, not base64url, or the key is not a valid key
    /// (e.g. a point off the curve). The string names the member or structure.
    BadEncoding(&'static str),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::MissingKty => f.write_str("[kty] is missing in [keys]"),
            SkipReason::UnsupportedKty(k) => write!(f, "key type {k:?} is not supported"),
            SkipReason::UnsupportedCurve(c) => write!(f, "curve {c:?} is not supported"),
            SkipReason::UnsupportedAlg(a) => write!(f, "[alg] {a:?} is not supported"),
            SkipReason::AlgKeyMismatch(a) => write!(f, "[alg] {a:?} does not match the key"),
            SkipReason::NotForSignature => {
                f.write_str("key is not for signature verification ([use] or [key_ops])")
            }
            SkipReason::HmacFromRemote => f.write_str("HMAC keys are accepted only when local"),
            SkipReason::HmacKeyTooShort(n) => write!(f, "HMAC key of {n} bytes is too short"),
            SkipReason::RsaKeySize(bits) => {
                write!(f, "RSA key of {bits} bits (2048 to 8192 are accepted)")
            }
            SkipReason::RsaBadExponent => f.write_str("RSA public exponent is invalid"),
            SkipReason::RsaRoca => f.write_str("RSA key has the ROCA weakness (CVE-2017-15361)"),
            SkipReason::BadEncoding(what) => write!(f, "{what} is missing or malformed"),
        }
    }
}

/// A key of a key set that was not made usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the set (index in `keys`, in the certificate map, or PEM block number).
    pub index: usize,
    /// The key's `kid`, when it had one.
    pub kid: Option<Kid>,
    /// Why it was skipped.
    pub reason: SkipReason,
}
