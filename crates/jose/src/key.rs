//! Keys: raw material, usable verification keys, and public keys for export.

use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use aws_lc_rs::{hmac, signature};
use serde_json::{Map, Value, json};

use crate::alg::{Curve, Family};
use crate::keyset::KeySource;
use crate::{Algorithm, JoseError, Kid, SkipReason, base64url, roca, spki};

/// Key material as read from a JWK, an SPKI or a certificate, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Material {
    /// Big-endian modulus and exponent without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
    Hmac {
        k: Vec<u8>,
    },
}

fn strip_leading_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
    }
}

impl Material {
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Material {
        Material::Rsa {
            n: strip_leading_zeros(n),
            e: strip_leading_zeros(e),
        }
    }

    fn family(&self) -> Family {
        match self {
            Material::Rsa { .. } => Family::Rsa,
            Material::Ec { curve, .. } => Family::Ec(*curve),
            Material::Ed25519 { .. } => Family::Ed25519,
            Material::Hmac { .. } => Family::Hmac,
        }
    }
}

/// How one algorithm verifies with one key.
#[derive(Clone)]
enum Verifier {
    Public(ParsedPublicKey),
    // Boxed: aws-lc-rs's HMAC key holds its context inline and is large.
    Hmac(Box<hmac::Key>),
}

/// A key of a [`crate::KeySet`], checked and ready to verify. It verifies only with the
/// algorithms its type (and its JWK `alg`, when present) allows.
#[derive(Clone)]
pub struct Key {
    kid: Option<Kid>,
    verifiers: Vec<(Algorithm, Verifier)>,
}

impl fmt::Debug for Key {
    // Never prints key bytes (an HMAC key is a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms().collect::<Vec<_>>())
            .finish()
    }
}

impl Key {
    /// Checks `material` and prepares it for the algorithms it may verify. `alg` is the JWK's
    /// `alg` member when there was one.
    pub(crate) fn new(
        kid: Option<Kid>,
        material: &Material,
        alg: Option<&str>,
        source: KeySource,
    ) -> Result<Key, SkipReason> {
        let family = material.family();
        let mut algs: Vec<Algorithm> = match alg {
            Some(name) => {
                let a = name
                    .parse::<Algorithm>()
                    .map_err(|_| SkipReason::UnsupportedAlg(name.to_owned()))?;
                // The algorithm comes from the key: a declared alg must fit the key type.
                if a.family() != family {
                    return Err(SkipReason::AlgKeyMismatch(name.to_owned()));
                }
                vec![a]
            }
            None => Algorithm::ALL
                .into_iter()
                .filter(|a| a.family() == family)
                .collect(),
        };
        let verifiers = match material {
            Material::Hmac { k } => {
                // A remote key set is public; an HMAC key in it is a key anyone can sign with.
                if source != KeySource::Local {
                    return Err(SkipReason::HmacFromRemote);
                }
                // RFC 7518 section 3.2: the key must be at least as long as the hash output.
                algs.retain(|a| a.hmac().is_some_and(|(_, min)| k.len() >= min));
                if algs.is_empty() {
                    return Err(SkipReason::HmacKeyTooShort(k.len()));
                }
                algs.iter()
                    .filter_map(|&a| {
                        a.hmac()
                            .map(|(h, _)| (a, Verifier::Hmac(Box::new(hmac::Key::new(h, k)))))
                    })
                    .collect()
            }
            Material::Rsa { n, e } => {
                let bits = bit_len(n);
                if !(2048..=8192).contains(&bits) {
                    return Err(SkipReason::RsaKeySize(bits));
                }
                let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
                if !e_is_odd || bit_len(e) < 2 {
                    return Err(SkipReason::RsaBadExponent);
                }
                if roca::has_fingerprint(n) {
                    return Err(SkipReason::RsaRoca);
                }
                let components = RsaPublicKeyComponents { n, e };
                algs.iter()
                    .map(|&a| {
                        let params = a.rsa_parameters().ok_or(SkipReason::BadEncoding("RSA"))?;
                        components
                            .to_parsed_public_key(params)
                            .map(|k| (a, Verifier::Public(k)))
                            .map_err(|_| SkipReason::BadEncoding("RSA [n] or [e]"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Material::Ec { curve, x, y } => {
                let len = curve.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(SkipReason::BadEncoding("EC [x] or [y]"));
                }
                let point = [&[4u8][..], x, y].concat();
                public_verifiers(&algs, &point, "EC point")?
            }
            Material::Ed25519 { x } => {
                if x.len() != 32 {
                    return Err(SkipReason::BadEncoding("OKP [x]"));
                }
                public_verifiers(&algs, x, "OKP [x]")?
            }
        };
        Ok(Key { kid, verifiers })
    }

    /// The key id, if the key had one.
    pub fn kid(&self) -> Option<&Kid> {
        self.kid.as_ref()
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.verifiers.iter().map(|(a, _)| *a)
    }

    /// Whether this key may verify `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `signature` over `message` with `alg`; false when the key does not support
    /// `alg` or the signature is wrong.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .filter(|(a, _)| *a == alg)
            .any(|(_, v)| match v {
                Verifier::Public(k) => k.verify_sig(message, signature).is_ok(),
                // Constant-time comparison inside aws-lc-rs.
                Verifier::Hmac(k) => hmac::verify(k, message, signature).is_ok(),
            })
    }
}

fn public_verifiers(
    algs: &[Algorithm],
    bytes: &[u8],
    what: &'static str,
) -> Result<Vec<(Algorithm, Verifier)>, SkipReason> {
    algs.iter()
        .map(|&a| {
            let v: &'static dyn signature::VerificationAlgorithm =
                a.verification().ok_or(SkipReason::BadEncoding(what))?;
            ParsedPublicKey::new(v, bytes)
                .map(|k| (a, Verifier::Public(k)))
                .map_err(|_| SkipReason::BadEncoding(what))
        })
        .collect()
}

/// Reads one JWK object. Errors carry the kid when it could be read.
pub(crate) fn key_from_jwk(
    jwk: &Map<String, Value>,
    source: KeySource,
) -> Result<Key, (Option<Kid>, SkipReason)> {
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(Kid(k.clone())),
        Some(_) => return Err((None, SkipReason::BadEncoding("[kid]"))),
    };
    let fail = |reason| (kid.clone(), reason);
    // RFC 7517 section 4.2/4.3: a key for encryption, or whose key_ops exclude "verify",
    // must not verify signatures.
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(fail(SkipReason::NotForSignature)),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err(fail(SkipReason::NotForSignature));
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(a.as_str()),
        Some(other) => return Err(fail(SkipReason::UnsupportedAlg(other.to_string()))),
    };
    let member = |name: &'static str, what: &'static str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(base64url::decode_key_member)
            .ok_or(SkipReason::BadEncoding(what))
    };
    let material = match jwk.get("kty").and_then(Value::as_str) {
        None => Err(SkipReason::MissingKty),
        Some("RSA") => member("n", "RSA [n]")
            .and_then(|n| member("e", "RSA [e]").map(|e| Material::rsa(&n, &e))),
        Some("EC") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
            match Curve::from_name(crv) {
                None => Err(SkipReason::UnsupportedCurve(crv.to_owned())),
                Some(curve) => member("x", "EC [x]")
                    .and_then(|x| member("y", "EC [y]").map(|y| Material::Ec { curve, x, y })),
            }
        }
        Some("OKP") => match jwk.get("crv").and_then(Value::as_str).unwrap_or_default() {
            "Ed25519" => member("x", "OKP [x]").map(|x| Material::Ed25519 { x }),
            crv => Err(SkipReason::UnsupportedCurve(crv.to_owned())),
        },
        Some("oct") => member("k", "oct [k]").map(|k| Material::Hmac { k }),
        Some(other) => Err(SkipReason::UnsupportedKty(other.to_owned())),
    }
    .map_err(fail)?;
    Key::new(kid.clone(), &material, alg, source).map_err(fail)
}

/// A public key (RSA, EC or Ed25519), for turning an SPKI or certificate into a JWK.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Material);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.default_algorithm())
    }
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, JoseError> {
        spki::material_from_spki(der)
            .map(PublicKey)
            .map_err(|_| JoseError::PemBadEncoding)
    }

    /// From the first PEM block of `pem`: `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE`.
    pub fn from_pem(pem: &str) -> Result<PublicKey, JoseError> {
        let blocks = spki::pem_blocks(pem.as_bytes())?;
        let first = blocks.first().ok_or(JoseError::PemBadEncoding)?;
        spki::material_from_pem(first)
            .map(PublicKey)
            .map_err(|_| JoseError::PemBadEncoding)
    }

    /// The algorithm a signer with this key uses by default: RS256, ES256/384/512 or EdDSA.
    pub fn default_algorithm(&self) -> Algorithm {
        match &self.0 {
            Material::Rsa { .. } | Material::Hmac { .. } => Algorithm::RS256,
            Material::Ec { curve, .. } => curve.algorithm(),
            Material::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }

    /// The public JWK (RFC 7517/7518/8037), members base64url without padding, with `use:
    /// "sig"`, and `kid` and `alg` when given.
    pub fn to_jwk(&self, kid: Option<&str>, alg: Option<Algorithm>) -> Value {
        let mut jwk = match &self.0 {
            Material::Rsa { n, e } => {
                json!({"kty": "RSA", "n": base64url::encode(n), "e": base64url::encode(e)})
            }
            Material::Ec { curve, x, y } => json!({
                "kty": "EC", "crv": curve.name(),
                "x": base64url::encode(x), "y": base64url::encode(y),
            }),
            Material::Ed25519 { x } => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": base64url::encode(x)})
            }
            // Never constructed: PublicKey comes from SPKI, which has no HMAC keys.
            Material::Hmac { .. } => json!({"kty": "oct"}),
        };
        if let Value::Object(map) = &mut jwk {
            map.insert("use".into(), "sig".into());
            if let Some(kid) = kid {
                map.insert("kid".into(), kid.into());
            }
            if let Some(alg) = alg {
                map.insert("alg".into(), alg.name().into());
            }
        }
        jwk
    }
}
