//! Key sets in the formats ESP accepts at a `jwks_uri`, and signature verification.

use serde_json::Value;

use crate::key::{Key, key_from_jwk};
use crate::{JoseError, Jws, Kid, SkipReason, SkippedKey, spki};

/// The most keys (entries of `keys`, of a certificate map, or PEM blocks) a key set may list.
/// A larger document is refused whole ([`JoseError::JwksTooManyKeys`]), as garbage is, so it
/// never replaces a good set. Real issuers publish a handful (Google: 2-3).
pub const MAX_KEYS: usize = 100;

/// The most keys one token's signature is tried against. A token normally names its key by
/// `kid` (one candidate); a token without `kid`, or a set of keys without kids (PEM), makes every
/// key with a matching algorithm a candidate, and each try is a public-key operation an
/// anonymous client could ask for. Keys past this bound, in set order, are not tried.
pub const MAX_CANDIDATES: usize = 10;

/// Where a key set came from. HMAC (`oct`) keys are used only from [`KeySource::Local`] sets:
/// a remote key set is public, so an HMAC key in it is a key anyone may sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Configured by the operator (a file, inline configuration).
    Local,
    /// Fetched from a `jwks_uri` or by discovery.
    Remote,
}

/// A parsed key set: the usable keys, and the keys that were skipped with the reason.
#[derive(Clone, Debug)]
pub struct KeySet {
    source: KeySource,
    keys: Vec<Key>,
    skipped: Vec<SkippedKey>,
}

impl KeySet {
    /// Parses `bytes`, detecting the format:
    /// - a JWKS `{"keys": [...]}` (RSA `n`/`e`; EC P-256, P-384, P-521 `x`/`y`; OKP Ed25519
    ///   `x`; `oct` `k` only for [`KeySource::Local`]);
    /// - a JSON object mapping key ids to PEM X.509 certificates (what Google serves at
    ///   `https://www.googleapis.com/robot/v1/metadata/x509/<account>`);
    /// - PEM: one or more `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE` blocks (keys without
    ///   a kid).
    ///
    /// A key that cannot be used is skipped and reported in [`KeySet::skipped`]; a set with no
    /// usable key is [`JoseError::NoUsableKeys`]. Keys sharing a kid are all kept and tried.
    pub fn parse(bytes: &[u8], source: KeySource) -> Result<KeySet, JoseError> {
        let text = bytes.trim_ascii_start();
        let mut set = KeySet {
            source,
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        if text.starts_with(b"-----BEGIN ") {
            let blocks = spki::pem_blocks(text)?;
            check_count(blocks.len())?;
            set.add_pem(&blocks);
        } else {
            let json: Value = serde_json::from_slice(text).map_err(|_| JoseError::JwksBadJson)?;
            let Value::Object(map) = json else {
                return Err(JoseError::JwksBadJson);
            };
            match map.get("keys") {
                Some(Value::Array(keys)) => {
                    check_count(keys.len())?;
                    set.add_jwks(keys);
                }
                Some(_) => return Err(JoseError::JwksBadKeys),
                None if !map.is_empty() && map.values().all(Value::is_string) => {
                    check_count(map.len())?;
                    set.add_certificate_map(&map);
                }
                None => return Err(JoseError::JwksNoKeys),
            }
        }
        if set.keys.is_empty() {
            return Err(JoseError::NoUsableKeys {
                skipped: set.skipped,
            });
        }
        Ok(set)
    }

    fn add_jwks(&mut self, keys: &[Value]) {
        for (index, jwk) in keys.iter().enumerate() {
            let result = match jwk {
                Value::Object(jwk) => key_from_jwk(jwk, self.source),
                _ => Err((None, SkipReason::BadEncoding("key object"))),
            };
            match result {
                Ok(key) => self.keys.push(key),
                Err((kid, reason)) => self.skipped.push(SkippedKey { index, kid, reason }),
            }
        }
    }

    fn add_certificate_map(&mut self, map: &serde_json::Map<String, Value>) {
        for (index, (kid, pem)) in map.iter().enumerate() {
            let kid = Kid(kid.clone());
            let result = spki::pem_blocks(pem.as_str().unwrap_or_default().as_bytes())
                .map_err(|_| SkipReason::BadEncoding("PEM certificate"))
                .and_then(|blocks| match blocks.as_slice() {
                    [cert] if cert.label == "CERTIFICATE" => {
                        spki::material_from_certificate(&cert.contents)
                    }
                    _ => Err(SkipReason::BadEncoding("PEM certificate")),
                })
                .and_then(|m| Key::new(Some(kid.clone()), &m, None, self.source));
            match result {
                Ok(key) => self.keys.push(key),
                Err(reason) => self.skipped.push(SkippedKey {
                    index,
                    kid: Some(kid),
                    reason,
                }),
            }
        }
    }

    fn add_pem(&mut self, blocks: &[x509_parser::pem::Pem]) {
        for (index, block) in blocks.iter().enumerate() {
            match spki::material_from_pem(block).and_then(|m| Key::new(None, &m, None, self.source))
            {
                Ok(key) => self.keys.push(key),
                Err(reason) => self.skipped.push(SkippedKey {
                    index,
                    kid: None,
                    reason,
                }),
            }
        }
    }

    /// Where the set came from.
    /// A set with no keys: what a key server means by a well-formed empty document
    /// (`{"keys": []}`, `{}`) — every key of the issuer withdrawn. Verifying against it always
    /// fails with [`JoseError::KeyNotFound`]; [`KeySet::parse`] never returns it (a document
    /// without usable keys is [`JoseError::NoUsableKeys`]), callers build it deliberately.
    pub fn empty(source: KeySource) -> KeySet {
        KeySet {
            source,
            keys: Vec::new(),
            skipped: Vec::new(),
        }
    }

    pub fn source(&self) -> KeySource {
        self.source
    }

    /// The usable keys, in the order of the source.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys that were not made usable, with the reason, for the caller to log.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }
}

fn check_count(count: usize) -> Result<(), JoseError> {
    if count > MAX_KEYS {
        return Err(JoseError::JwksTooManyKeys {
            count,
            limit: MAX_KEYS,
        });
    }
    Ok(())
}

/// Verifies the signature of `jws` with `keys` and returns the key that verified it.
///
/// Key selection, as jwt_verify_lib: a key is a candidate when it supports the token's `alg`
/// (the algorithm comes from the key: its type, curve and declared `alg` must agree) and,
/// when both the token and the key have a kid, the kids are equal. A key without a kid (a PEM
/// key) is a candidate for any token kid. Candidates are tried in set order, duplicates
/// included, at most [`MAX_CANDIDATES`] of them.
///
/// Errors: an HMAC `alg` against a [`KeySource::Remote`] set is
/// [`JoseError::AlgNotSupported`]; no candidate is [`JoseError::KeyNotFound`] (the proxy may
/// refetch); candidates but no valid signature is [`JoseError::VerificationFailed`].
/// Header fields that point at keys (`jku`, `x5u`, `jwk`, `x5c`) are never consulted.
pub fn verify<'k>(jws: &Jws, keys: &'k KeySet) -> Result<&'k Key, JoseError> {
    let alg = jws.header().alg;
    if alg.is_hmac() && keys.source != KeySource::Local {
        return Err(JoseError::AlgNotSupported);
    }
    let token_kid = jws.header().kid.as_ref();
    let mut candidates = keys
        .keys
        .iter()
        .filter(|key| key.supports(alg))
        .filter(|key| match (token_kid, key.kid()) {
            (Some(t), Some(k)) => t == k,
            _ => true,
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(JoseError::KeyNotFound {
            kid: token_kid.cloned(),
        });
    }
    candidates
        .take(MAX_CANDIDATES)
        .find(|key| key.verify(alg, jws.signing_input(), jws.signature()))
        .ok_or(JoseError::VerificationFailed)
}

#[cfg(test)]
mod tests {
    /// The proxy shares key sets and tokens across tasks behind `Arc`.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::KeySet>();
        assert_send_sync::<crate::Jwt>();
        assert_send_sync::<crate::Signer>();
        assert_send_sync::<crate::JoseError>();
    }
}
