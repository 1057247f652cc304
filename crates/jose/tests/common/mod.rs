//! Shared test helpers: the fixed clock, the checked-in keys, and token minting.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jose::{Algorithm, KeySet, KeySource, Signer, UnixTime};
use serde_json::{Value, json};

/// The fixed "now" of every test: 2023-11-14T22:13:20Z.
pub const NOW: UnixTime = UnixTime(1_700_000_000);

pub const RSA_PKCS8: &str = include_str!("../fixtures/rsa2048.pkcs8.pem");
pub const RSA_SPKI: &str = include_str!("../fixtures/rsa2048.spki.pem");
pub const RSA_PKCS1_PUBLIC: &str = include_str!("../fixtures/rsa2048.pkcs1-public.pem");
pub const RSA1024_PKCS8: &str = include_str!("../fixtures/rsa1024.pkcs8.pem");
pub const RSA1024_SPKI: &str = include_str!("../fixtures/rsa1024.spki.pem");
pub const P256_PKCS8: &str = include_str!("../fixtures/p256.pkcs8.pem");
pub const P256_SPKI: &str = include_str!("../fixtures/p256.spki.pem");
pub const ED25519_PKCS8: &str = include_str!("../fixtures/ed25519.pkcs8.pem");
pub const ED25519_SPKI: &str = include_str!("../fixtures/ed25519.spki.pem");

pub fn rsa() -> Signer {
    Signer::from_pkcs8_pem(RSA_PKCS8).unwrap()
}
pub fn p256() -> Signer {
    Signer::from_pkcs8_pem(P256_PKCS8).unwrap()
}
pub fn ed25519() -> Signer {
    Signer::from_pkcs8_pem(ED25519_PKCS8).unwrap()
}

/// The usual claims: valid for an hour from NOW.
pub fn claims() -> Value {
    json!({
        "iss": "https://issuer.example",
        "sub": "user@example.com",
        "aud": "bookstore.example.com",
        "iat": NOW.0,
        "exp": NOW.0 + 3600,
    })
}

/// A JWK for `signer`'s public key with `kid` (and `alg` when given).
pub fn jwk(signer: &Signer, kid: &str, alg: Option<Algorithm>) -> Value {
    signer.public_key().unwrap().unwrap().to_jwk(Some(kid), alg)
}

/// A key set of the given JWKs.
pub fn jwks(keys: &[Value], source: KeySource) -> KeySet {
    KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), source).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Mints a token from raw header and payload JSON text, correctly signed by `signer` with
/// `alg`, so that tests can put anything in the header or payload.
pub fn mint_raw(signer: &Signer, alg: Algorithm, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = signer.sign(alg, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

/// Replaces the signature segment of `token`.
pub fn with_signature(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(sig))
}

pub fn signature_of(token: &str) -> Vec<u8> {
    unb64(token.rsplit_once('.').unwrap().1)
}
