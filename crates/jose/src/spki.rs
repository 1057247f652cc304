//! DER and PEM: SubjectPublicKeyInfo, PKCS#1 RSA public keys and X.509 certificates, read with
//! x509-parser (parsing only; no certificate validation, as jwt_verify_lib: a certificate in a
//! key set is merely a container for its public key).

use base64::Engine as _;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::alg::Curve;
use crate::key::Material;
use crate::{JoseError, SkipReason};

/// Reads every PEM block of `text`.
pub(crate) fn pem_blocks(text: &[u8]) -> Result<Vec<Pem>, JoseError> {
    let blocks = Pem::iter_from_buffer(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| JoseError::PemBadEncoding)?;
    if blocks.is_empty() {
        return Err(JoseError::PemBadEncoding);
    }
    Ok(blocks)
}

/// The public key of one PEM block: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) or
/// `CERTIFICATE`.
pub(crate) fn material_from_pem(block: &Pem) -> Result<Material, SkipReason> {
    match block.label.as_str() {
        "PUBLIC KEY" => material_from_spki(&block.contents),
        "RSA PUBLIC KEY" => material_from_pkcs1(&block.contents),
        "CERTIFICATE" => material_from_certificate(&block.contents),
        other => Err(SkipReason::UnsupportedKty(format!("PEM {other}"))),
    }
}

/// The public key of a DER X.509 certificate.
pub(crate) fn material_from_certificate(der: &[u8]) -> Result<Material, SkipReason> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => spki_to_material(cert.public_key()),
        _ => Err(SkipReason::BadEncoding("X.509 certificate")),
    }
}

/// The public key of a DER SubjectPublicKeyInfo.
pub(crate) fn material_from_spki(der: &[u8]) -> Result<Material, SkipReason> {
    match SubjectPublicKeyInfo::from_der(der) {
        Ok(([], spki)) => spki_to_material(&spki),
        _ => Err(SkipReason::BadEncoding("SubjectPublicKeyInfo")),
    }
}

fn material_from_pkcs1(der: &[u8]) -> Result<Material, SkipReason> {
    match RSAPublicKey::from_der(der) {
        Ok(([], key)) => Ok(Material::rsa(key.modulus, key.exponent)),
        _ => Err(SkipReason::BadEncoding("RSAPublicKey")),
    }
}

fn spki_to_material(spki: &SubjectPublicKeyInfo<'_>) -> Result<Material, SkipReason> {
    let oid = &spki.algorithm.algorithm;
    let key_bytes: &[u8] = &spki.subject_public_key.data;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        material_from_pkcs1(key_bytes)
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or(SkipReason::BadEncoding("EC curve parameters"))?;
        let curve = if curve_oid == OID_EC_P256 {
            Curve::P256
        } else if curve_oid == OID_NIST_EC_P384 {
            Curve::P384
        } else if curve_oid == OID_NIST_EC_P521 {
            Curve::P521
        } else {
            return Err(SkipReason::UnsupportedCurve(curve_oid.to_id_string()));
        };
        // Uncompressed point only: 0x04 || x || y.
        let len = curve.coordinate_len();
        match key_bytes.split_first() {
            Some((4, xy)) if xy.len() == 2 * len => Ok(Material::Ec {
                curve,
                x: xy[..len].to_vec(),
                y: xy[len..].to_vec(),
            }),
            _ => Err(SkipReason::BadEncoding("EC point")),
        }
    } else if *oid == OID_SIG_ED25519 {
        Ok(Material::Ed25519 {
            x: key_bytes.to_vec(),
        })
    } else {
        Err(SkipReason::UnsupportedKty(oid.to_id_string()))
    }
}

/// PEM-encodes `der` under `label`, 64 characters a line.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
