//! Signing: Google service-account key files and a signer over PKCS#8 private keys.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alg::{Curve, Family};
use crate::{Algorithm, JoseError, PublicKey, base64url, spki};

/// A Google service-account key file (the JSON `gcloud iam service-accounts keys create`
/// writes). `Debug` never prints the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    /// Always `"service_account"`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The project id.
    pub project_id: String,
    /// The key id; tokens signed with this file carry it as `kid`.
    pub private_key_id: String,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key: String,
    /// The account, `NAME@PROJECT.iam.gserviceaccount.com`.
    pub client_email: String,
    /// The account's numeric id.
    pub client_id: String,
    /// OAuth authorization endpoint.
    pub auth_uri: String,
    /// OAuth token endpoint.
    pub token_uri: String,
    /// Google's OAuth certificates.
    pub auth_provider_x509_cert_url: String,
    /// The account's certificates (the X.509 map format of [`crate::KeySet::parse`]).
    pub client_x509_cert_url: String,
    /// Present in newer files (`googleapis.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub universe_domain: Option<String>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// A key file with Google's endpoint URLs filled in for `client_email`.
    pub fn new_google(
        project_id: &str,
        client_email: &str,
        client_id: &str,
        private_key_id: &str,
        private_key_pem: &str,
    ) -> ServiceAccountKey {
        ServiceAccountKey {
            key_type: "service_account".into(),
            project_id: project_id.into(),
            private_key_id: private_key_id.into(),
            private_key: private_key_pem.into(),
            client_email: client_email.into(),
            client_id: client_id.into(),
            auth_uri: "https://accounts.google.com/o/oauth2/auth".into(),
            token_uri: "https://oauth2.googleapis.com/token".into(),
            auth_provider_x509_cert_url: "https://www.googleapis.com/oauth2/v1/certs".into(),
            client_x509_cert_url: format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                client_email.replace('@', "%40")
            ),
            universe_domain: Some("googleapis.com".into()),
        }
    }

    /// Parses a key file. `type` must be `service_account` and `private_key` non-empty.
    pub fn from_json(json: &str) -> Result<ServiceAccountKey, JoseError> {
        // The serde error is dropped on purpose: it may quote parts of the file.
        let key: ServiceAccountKey = serde_json::from_str(json).map_err(|_| {
            JoseError::ServiceAccountKeyInvalid("not the JSON of a service account key")
        })?;
        if key.key_type != "service_account" {
            return Err(JoseError::ServiceAccountKeyInvalid(
                "[type] is not \"service_account\"",
            ));
        }
        if key.private_key.trim().is_empty() {
            return Err(JoseError::ServiceAccountKeyInvalid(
                "[private_key] is empty",
            ));
        }
        Ok(key)
    }

    /// Serializes as Google does (pretty JSON).
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair, Curve),
    Ed25519(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// Signs JWTs with one private key. `Debug` never prints the key.
pub struct Signer {
    inner: Inner,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.default_algorithm())
    }
}

impl Signer {
    /// From a DER PKCS#8 private key: RSA, ECDSA P-256/P-384/P-521 or Ed25519 (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Signer, JoseError> {
        let inner = if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            Inner::Rsa(k)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Inner::Ecdsa(k, Curve::P256)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            Inner::Ecdsa(k, Curve::P384)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, der) {
            Inner::Ecdsa(k, Curve::P521)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
            Inner::Ed25519(k)
        } else {
            return Err(JoseError::PrivateKeyUnsupported);
        };
        Ok(Signer { inner })
    }

    /// From a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Signer, JoseError> {
        let blocks = spki::pem_blocks(pem.as_bytes())?;
        match blocks.as_slice() {
            [block] if block.label == "PRIVATE KEY" => Signer::from_pkcs8_der(&block.contents),
            _ => Err(JoseError::PrivateKeyUnsupported),
        }
    }

    /// From a service-account key file's `private_key`.
    pub fn from_service_account(key: &ServiceAccountKey) -> Result<Signer, JoseError> {
        Signer::from_pkcs8_pem(&key.private_key)
    }

    /// An HMAC signer, for tests and local HMAC keys.
    pub fn hmac(secret: &[u8]) -> Signer {
        Signer {
            inner: Inner::Hmac(secret.to_vec()),
        }
    }

    /// The algorithm of this key's usual JWTs: RS256, ES256/ES384/ES512, EdDSA or HS256.
    pub fn default_algorithm(&self) -> Algorithm {
        match &self.inner {
            Inner::Rsa(_) => Algorithm::RS256,
            Inner::Ecdsa(_, curve) => curve.algorithm(),
            Inner::Ed25519(_) => Algorithm::EdDSA,
            Inner::Hmac(_) => Algorithm::HS256,
        }
    }

    /// The public key (`None` for HMAC).
    pub fn public_key(&self) -> Result<Option<PublicKey>, JoseError> {
        let der: PublicKeyX509Der<'static> = match &self.inner {
            Inner::Rsa(k) => k.public_key().as_der(),
            Inner::Ecdsa(k, _) => k.public_key().as_der(),
            Inner::Ed25519(k) => k.public_key().as_der(),
            Inner::Hmac(_) => return Ok(None),
        }
        .map_err(|_| JoseError::Crypto("encoding a public key"))?;
        PublicKey::from_spki_der(der.as_ref()).map(Some)
    }

    /// Mints a compact JWT: header `{"alg", "typ": "JWT", "kid"?}`, payload `claims`
    /// serialized as JSON. `alg` must suit the key (any RS*/PS* for RSA keys; the curve's
    /// ES* for EC; EdDSA for Ed25519; HS* for HMAC).
    pub fn sign_jwt(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        claims: &Value,
    ) -> Result<String, JoseError> {
        let mut header = Map::new();
        header.insert("alg".into(), alg.name().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = kid {
            header.insert("kid".into(), kid.into());
        }
        let header = Value::Object(header).to_string();
        let mut token = format!(
            "{}.{}",
            base64url::encode(header.as_bytes()),
            base64url::encode(claims.to_string().as_bytes())
        );
        let signature = self.sign(alg, token.as_bytes())?;
        token.push('.');
        token.push_str(&base64url::encode(&signature));
        Ok(token)
    }

    /// Signs `message` (a JWS signing input) with `alg`.
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let mismatch = JoseError::SigningAlgorithmMismatch(alg);
        let failed = |_| JoseError::Crypto("signing");
        match &self.inner {
            Inner::Rsa(k) => {
                let encoding = alg.rsa_encoding().ok_or(mismatch)?;
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(encoding, &SystemRandom::new(), message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            Inner::Ecdsa(k, curve) if alg.family() == Family::Ec(*curve) => k
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            Inner::Ed25519(k) if alg == Algorithm::EdDSA => Ok(k.sign(message).as_ref().to_vec()),
            Inner::Hmac(secret) => {
                let (h, _) = alg.hmac().ok_or(mismatch)?;
                Ok(hmac::sign(&hmac::Key::new(h, secret), message)
                    .as_ref()
                    .to_vec())
            }
            Inner::Ecdsa(..) | Inner::Ed25519(_) => Err(mismatch),
        }
    }
}
