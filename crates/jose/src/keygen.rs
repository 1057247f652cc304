//! Key generation for service-account keys and test fixtures (aws-lc-rs).

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use serde_json::Value;

use crate::{Algorithm, JoseError, PublicKey, Signer, spki};

/// A freshly generated key pair. `Debug` never prints the private key.
#[derive(Clone)]
pub struct GeneratedKey {
    /// The algorithm tokens signed with it use.
    pub algorithm: Algorithm,
    /// PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`), the form of service-account key files.
    pub private_pkcs8_pem: String,
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_spki_pem: String,
    public: PublicKey,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("public_spki_pem", &self.public_spki_pem)
            .finish_non_exhaustive()
    }
}

impl GeneratedKey {
    fn new(algorithm: Algorithm, pkcs8: &[u8], spki_der: &[u8]) -> Result<Self, JoseError> {
        Ok(GeneratedKey {
            algorithm,
            private_pkcs8_pem: spki::pem_encode("PRIVATE KEY", pkcs8),
            public_spki_pem: spki::pem_encode("PUBLIC KEY", spki_der),
            public: PublicKey::from_spki_der(spki_der)?,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public JWK with `kid`, `alg` and `use: "sig"`, for a JWKS.
    pub fn public_jwk(&self, kid: &str) -> Value {
        self.public.to_jwk(Some(kid), Some(self.algorithm))
    }

    /// A signer over the private key.
    pub fn signer(&self) -> Result<Signer, JoseError> {
        Signer::from_pkcs8_pem(&self.private_pkcs8_pem)
    }
}

fn crypto(what: &'static str) -> impl Fn(aws_lc_rs::error::Unspecified) -> JoseError {
    move |_| JoseError::Crypto(what)
}

/// A 2048-bit RSA key (RS256), e = 65537.
pub fn generate_rsa_2048() -> Result<GeneratedKey, JoseError> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(crypto("generating RSA"))?;
    let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(crypto("encoding RSA"))?;
    let spki: PublicKeyX509Der<'static> =
        pair.public_key().as_der().map_err(crypto("encoding RSA"))?;
    GeneratedKey::new(Algorithm::RS256, pkcs8.as_ref(), spki.as_ref())
}

/// A P-256 ECDSA key (ES256).
pub fn generate_es256() -> Result<GeneratedKey, JoseError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(crypto("generating P-256"))?;
    let pkcs8 = pair.to_pkcs8v1().map_err(crypto("encoding P-256"))?;
    let spki: PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(crypto("encoding P-256"))?;
    GeneratedKey::new(Algorithm::ES256, pkcs8.as_ref(), spki.as_ref())
}

/// An Ed25519 key (EdDSA), private key as PKCS#8 v1 (jsonwebtoken and older tools reject v2).
pub fn generate_ed25519() -> Result<GeneratedKey, JoseError> {
    let pair = Ed25519KeyPair::generate().map_err(crypto("generating Ed25519"))?;
    let pkcs8 = pair.to_pkcs8v1().map_err(crypto("encoding Ed25519"))?;
    let spki: PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(crypto("encoding Ed25519"))?;
    GeneratedKey::new(Algorithm::EdDSA, pkcs8.as_ref(), spki.as_ref())
}
