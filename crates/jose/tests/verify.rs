//! Signature verification: key selection, the algorithm from the key, tampering.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use common::*;
use jose::{Algorithm, JoseError, Jwt, KeySet, KeySource, Kid, Signer, verify};
use serde_json::json;

fn check(token: &str, keys: &KeySet) -> Result<Option<Kid>, JoseError> {
    let jwt = Jwt::parse(token)?;
    verify(jwt.jws(), keys).map(|k| k.kid().cloned())
}

#[test]
fn each_algorithm_verifies_with_its_key() {
    let (rsa, p256, ed) = (rsa(), p256(), ed25519());
    let keys = jwks(
        &[
            jwk(&rsa, "rsa", None),
            jwk(&p256, "ec", None),
            jwk(&ed, "ed", None),
        ],
        KeySource::Remote,
    );
    let cases = [
        (&rsa, "rsa", Algorithm::RS256),
        (&rsa, "rsa", Algorithm::RS384),
        (&rsa, "rsa", Algorithm::RS512),
        (&rsa, "rsa", Algorithm::PS256),
        (&rsa, "rsa", Algorithm::PS384),
        (&rsa, "rsa", Algorithm::PS512),
        (&p256, "ec", Algorithm::ES256),
        (&ed, "ed", Algorithm::EdDSA),
    ];
    for (signer, kid, alg) in cases {
        let token = signer.sign_jwt(Some(kid), alg, &claims()).unwrap();
        assert_eq!(check(&token, &keys).unwrap(), Some(Kid::from(kid)), "{alg}");
    }
}

#[test]
fn key_selection_table() {
    let (rsa, p256) = (rsa(), p256());
    let other_rsa = Signer::from_pkcs8_der(&{
        let k = jose::generate_rsa_2048().unwrap();
        unpem(&k.private_pkcs8_pem)
    })
    .unwrap();
    let remote = |keys: &[serde_json::Value]| jwks(keys, KeySource::Remote);
    let rs = |kid: Option<&str>| rsa.sign_jwt(kid, Algorithm::RS256, &claims()).unwrap();
    let not_found = "Jwks doesn't have key to match kid or alg from Jwt";
    let fails = "Jwt verification fails";
    struct Case {
        desc: &'static str,
        token: String,
        keys: KeySet,
        want: Result<Option<&'static str>, &'static str>,
    }
    let cases = vec![
        Case {
            desc: "kid matches",
            token: rs(Some("a")),
            keys: remote(&[jwk(&rsa, "a", None)]),
            want: Ok(Some("a")),
        },
        Case {
            desc: "unknown kid",
            token: rs(Some("zzz")),
            keys: remote(&[jwk(&rsa, "a", None)]),
            want: Err(not_found),
        },
        Case {
            desc: "kid picks the right one of two",
            token: rs(Some("b")),
            keys: remote(&[jwk(&other_rsa, "a", None), jwk(&rsa, "b", None)]),
            want: Ok(Some("b")),
        },
        Case {
            desc: "kid names the wrong key",
            token: rs(Some("a")),
            keys: remote(&[jwk(&other_rsa, "a", None), jwk(&rsa, "b", None)]),
            want: Err(fails),
        },
        Case {
            desc: "no kid: every compatible key is tried",
            token: rs(None),
            keys: remote(&[jwk(&other_rsa, "a", None), jwk(&rsa, "b", None)]),
            want: Ok(Some("b")),
        },
        Case {
            desc: "duplicate kids: all tried",
            token: rs(Some("a")),
            keys: remote(&[jwk(&other_rsa, "a", None), jwk(&rsa, "a", None)]),
            want: Ok(Some("a")),
        },
        Case {
            desc: "RS256 token, only an EC key",
            token: rs(Some("a")),
            keys: remote(&[jwk(&p256, "a", None)]),
            want: Err(not_found),
        },
        Case {
            desc: "PS256 token, key declares RS256",
            token: rsa
                .sign_jwt(Some("a"), Algorithm::PS256, &claims())
                .unwrap(),
            keys: remote(&[jwk(&rsa, "a", Some(Algorithm::RS256))]),
            want: Err(not_found),
        },
        Case {
            desc: "RS256 token, key declares RS256",
            token: rs(Some("a")),
            keys: remote(&[jwk(&rsa, "a", Some(Algorithm::RS256))]),
            want: Ok(Some("a")),
        },
        Case {
            desc: "ES384 token against a P-256 key",
            token: tamper_alg(
                &p256
                    .sign_jwt(Some("a"), Algorithm::ES256, &claims())
                    .unwrap(),
                "ES384",
            ),
            keys: remote(&[jwk(&p256, "a", None)]),
            want: Err(not_found),
        },
        Case {
            desc: "wrong key with the right kid",
            token: rs(Some("a")),
            keys: remote(&[jwk(&other_rsa, "a", None)]),
            want: Err(fails),
        },
    ];
    for c in cases {
        let got = check(&c.token, &c.keys).map_err(|e| e.to_string());
        let want = c.want.map(|k| k.map(Kid::from)).map_err(str::to_string);
        assert_eq!(got, want, "{}", c.desc);
    }
}

#[test]
fn unknown_kid_is_a_distinct_variant_carrying_the_kid() {
    let rsa = rsa();
    let token = rsa
        .sign_jwt(Some("new-key"), Algorithm::RS256, &claims())
        .unwrap();
    let keys = jwks(&[jwk(&rsa, "old-key", None)], KeySource::Remote);
    match check(&token, &keys) {
        Err(JoseError::KeyNotFound { kid }) => assert_eq!(kid, Some(Kid::from("new-key"))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hmac_only_with_local_keys() {
    let secret = [7u8; 32];
    let hs = Signer::hmac(&secret);
    let token = hs.sign_jwt(Some("h"), Algorithm::HS256, &claims()).unwrap();
    let oct = json!({"kty": "oct", "kid": "h", "k": b64(&secret)});
    let local = jwks(std::slice::from_ref(&oct), KeySource::Local);
    assert_eq!(check(&token, &local).unwrap(), Some(Kid::from("h")));

    // The same oct key fetched from a jwks_uri is never used.
    let remote_json = json!({"keys": [oct.clone(), jwk(&rsa(), "r", None)]}).to_string();
    let remote = KeySet::parse(remote_json.as_bytes(), KeySource::Remote).unwrap();
    assert_eq!(remote.keys().len(), 1);
    assert_eq!(remote.skipped()[0].reason, jose::SkipReason::HmacFromRemote);
    assert_eq!(
        check(&token, &remote).unwrap_err().to_string(),
        "Jwt header [alg] is not supported"
    );

    // Key confusion: HS256 "signed" with the RSA public key's bytes must fail against the
    // RSA key, even in a local set.
    let rsa_keys = jwks(&[jwk(&rsa(), "r", None)], KeySource::Local);
    let confused = Signer::hmac(RSA_SPKI.as_bytes())
        .sign_jwt(Some("r"), Algorithm::HS256, &claims())
        .unwrap();
    assert_eq!(
        check(&confused, &rsa_keys).unwrap_err().to_string(),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
}

#[test]
fn keys_in_the_header_are_never_used() {
    // The attacker signs with their own key and embeds it (jwk), points at it (jku, x5u), or
    // attaches a chain (x5c). Only the key set decides.
    let attacker = jose::generate_es256().unwrap();
    let attacker_signer = attacker.signer().unwrap();
    let ours = jwks(&[jwk(&p256(), "k", None)], KeySource::Remote);
    let header = json!({
        "alg": "ES256", "kid": "k",
        "jwk": attacker.public_jwk("k"),
        "jku": "https://attacker.example/jwks",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB"],
    });
    let token = mint_raw(
        &attacker_signer,
        Algorithm::ES256,
        &header.to_string(),
        &claims().to_string(),
    );
    assert_eq!(
        check(&token, &ours).unwrap_err().to_string(),
        "Jwt verification fails"
    );
}

fn tamper_alg(token: &str, alg: &str) -> String {
    let (h, rest) = token.split_once('.').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&unb64(h)).unwrap();
    header["alg"] = alg.into();
    format!("{}.{rest}", b64(header.to_string().as_bytes()))
}

fn unpem(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Flips every bit of the signature, and truncates it at every length: all rejected.
fn assert_tamper_proof(signer: &Signer, alg: Algorithm) {
    let keys = jwks(&[jwk(signer, "k", None)], KeySource::Remote);
    let token = signer.sign_jwt(Some("k"), alg, &claims()).unwrap();
    assert!(check(&token, &keys).is_ok());
    let sig = signature_of(&token);
    for bit in 0..sig.len() * 8 {
        let mut bad = sig.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = check(&with_signature(&token, &bad), &keys).unwrap_err();
        assert!(
            matches!(err, JoseError::VerificationFailed),
            "{alg} bit {bit}: {err:?}"
        );
    }
    for len in 0..sig.len() {
        let err = check(&with_signature(&token, &sig[..len]), &keys).unwrap_err();
        assert!(
            matches!(err, JoseError::VerificationFailed),
            "{alg} len {len}: {err:?}"
        );
    }
    // Truncating the encoded token at every character never yields an accepted token.
    for cut in 0..token.len() {
        assert!(check(&token[..cut], &keys).is_err(), "{alg} cut {cut}");
    }
    // Appending bytes to the signature is rejected too.
    let mut long = sig.clone();
    long.push(0);
    assert!(check(&with_signature(&token, &long), &keys).is_err());
}

#[test]
fn tampered_rs256_signatures_are_rejected() {
    assert_tamper_proof(&rsa(), Algorithm::RS256);
}

#[test]
fn tampered_es256_signatures_are_rejected() {
    assert_tamper_proof(&p256(), Algorithm::ES256);
}

#[test]
fn tampered_eddsa_signatures_are_rejected() {
    assert_tamper_proof(&ed25519(), Algorithm::EdDSA);
}

#[test]
fn tampered_payload_and_header_are_rejected() {
    let rsa = rsa();
    let keys = jwks(&[jwk(&rsa, "k", None)], KeySource::Remote);
    let token = rsa
        .sign_jwt(Some("k"), Algorithm::RS256, &claims())
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims();
    forged["sub"] = "admin".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        check(&forged, &keys).unwrap_err().to_string(),
        "Jwt verification fails"
    );
    let downgraded = tamper_alg(&token, "PS256");
    assert_eq!(
        check(&downgraded, &keys).unwrap_err().to_string(),
        "Jwt verification fails"
    );
}
