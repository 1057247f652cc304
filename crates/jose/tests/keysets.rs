//! Key-set formats, skipped keys and their reasons.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use common::*;
use jose::{Algorithm, JoseError, Jwt, KeySet, KeySource, Kid, SkipReason, verify};
use serde_json::{Value, json};

fn parse(v: &Value) -> Result<KeySet, JoseError> {
    KeySet::parse(v.to_string().as_bytes(), KeySource::Remote)
}

fn verifies(token: &str, keys: &KeySet) -> bool {
    verify(Jwt::parse(token).unwrap().jws(), keys).is_ok()
}

#[test]
fn malformed_key_sets_have_the_contract_messages() {
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("not json", b"hello", "Jwks is an invalid JSON"),
        ("json list", b"[1]", "Jwks is an invalid JSON"),
        ("empty object", b"{}", "Jwks does not have [keys] field"),
        (
            "object of numbers",
            br#"{"a":1}"#,
            "Jwks does not have [keys] field",
        ),
        (
            "keys not a list",
            br#"{"keys":{}}"#,
            "[keys] in Jwks is not an array",
        ),
        (
            "keys empty",
            br#"{"keys":[]}"#,
            "Jwks doesn't have any valid public key",
        ),
        (
            "bad pem",
            b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
            "PEM pubkey parse fails",
        ),
    ];
    for (desc, bytes, want) in cases {
        let err = KeySet::parse(bytes, KeySource::Remote).unwrap_err();
        assert_eq!(err.to_string(), want, "{desc}");
    }
}

#[test]
fn unusable_keys_are_skipped_with_reasons() {
    let weak = jose::PublicKey::from_pem(RSA1024_SPKI)
        .unwrap()
        .to_jwk(Some("weak"), None);
    let good = jwk(&rsa(), "good", None);
    let ec = jwk(&p256(), "ec", None);
    let mut ec_bad_point = ec.clone();
    ec_bad_point["y"] = ec["x"].clone();
    let mut ec_wrong_alg = ec.clone();
    ec_wrong_alg["alg"] = "ES384".into();
    let mut enc = good.clone();
    enc["use"] = "enc".into();
    enc["kid"] = "enc".into();
    let mut ops = good.clone();
    ops["key_ops"] = json!(["encrypt"]);
    let mut e_one = good.clone();
    e_one["e"] = "AQ".into();
    let set = parse(&json!({"keys": [
        good,
        weak,
        {"kid": "nokty", "n": "AQAB"},
        {"kty": "RSA", "kid": "non", "e": "AQAB"},
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "Ed448", "x": "AA"},
        {"kty": "DSA"},
        ec_bad_point,
        ec_wrong_alg,
        enc,
        ops,
        e_one,
        {"kty": "RSA", "alg": "RS1", "n": "AQAB", "e": "AQAB"},
        "not an object",
    ]}))
    .unwrap();
    assert_eq!(set.keys().len(), 1);
    assert_eq!(set.keys()[0].kid(), Some(&Kid::from("good")));
    let reasons: Vec<(usize, SkipReason)> = set
        .skipped()
        .iter()
        .map(|s| (s.index, s.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (1, SkipReason::RsaKeySize(1024)),
            (2, SkipReason::MissingKty),
            (3, SkipReason::BadEncoding("RSA [n]")),
            (4, SkipReason::HmacFromRemote),
            (5, SkipReason::UnsupportedCurve("P-192".into())),
            (6, SkipReason::UnsupportedCurve("Ed448".into())),
            (7, SkipReason::UnsupportedKty("DSA".into())),
            (8, SkipReason::BadEncoding("EC point")),
            (9, SkipReason::AlgKeyMismatch("ES384".into())),
            (10, SkipReason::NotForSignature),
            (11, SkipReason::NotForSignature),
            (12, SkipReason::RsaBadExponent),
            (13, SkipReason::UnsupportedAlg("RS1".into())),
            (14, SkipReason::BadEncoding("key object")),
        ]
    );
    assert_eq!(set.skipped()[0].kid, Some(Kid::from("weak")));
    assert_eq!(set.skipped()[9].kid, Some(Kid::from("enc")));
    assert_eq!(set.skipped()[13].kid, None);
    assert_eq!(
        set.skipped()[0].reason.to_string(),
        "RSA key of 1024 bits (2048 to 8192 are accepted)"
    );
}

#[test]
fn a_set_of_only_weak_keys_is_an_error_that_lists_them() {
    let weak = jose::PublicKey::from_pem(RSA1024_SPKI)
        .unwrap()
        .to_jwk(Some("weak"), None);
    match parse(&json!({"keys": [weak]})) {
        Err(JoseError::NoUsableKeys { skipped }) => {
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].reason, SkipReason::RsaKeySize(1024));
        }
        other => panic!("{other:?}"),
    }
    // And a token signed by the weak key never verifies, even next to a good key.
    // aws-lc-rs will not even sign with it; the token was made with OpenSSL (fixtures README).
    assert!(jose::Signer::from_pkcs8_pem(RSA1024_PKCS8).is_err());
    let token = include_str!("fixtures/rsa1024.rs256.jwt").trim();
    let keys = KeySet::parse(
        format!("{RSA1024_SPKI}{RSA_SPKI}").as_bytes(),
        KeySource::Remote,
    )
    .unwrap();
    assert_eq!(keys.keys().len(), 1);
    assert!(!verifies(token, &keys));
}

#[test]
fn pem_public_keys_in_every_form() {
    let token_rsa = rsa()
        .sign_jwt(Some("any"), Algorithm::RS256, &claims())
        .unwrap();
    let token_ec = p256()
        .sign_jwt(Some("any"), Algorithm::ES256, &claims())
        .unwrap();
    let token_ed = ed25519()
        .sign_jwt(None, Algorithm::EdDSA, &claims())
        .unwrap();
    for (desc, pem, token) in [
        ("SPKI RSA", RSA_SPKI, &token_rsa),
        ("PKCS#1 RSA", RSA_PKCS1_PUBLIC, &token_rsa),
        ("SPKI P-256", P256_SPKI, &token_ec),
        ("SPKI Ed25519", ED25519_SPKI, &token_ed),
    ] {
        let keys = KeySet::parse(pem.as_bytes(), KeySource::Remote).unwrap();
        assert_eq!(keys.keys()[0].kid(), None, "{desc}");
        // A kid-less PEM key serves tokens with any kid (as jwt_verify_lib).
        assert!(verifies(token, &keys), "{desc}");
    }
    // Several blocks, one of them not a public key.
    let mixed = format!("{RSA_SPKI}\n{P256_PKCS8}\n{P256_SPKI}");
    let keys = KeySet::parse(mixed.as_bytes(), KeySource::Remote).unwrap();
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(
        keys.skipped()[0].reason,
        SkipReason::UnsupportedKty("PEM PRIVATE KEY".into())
    );
    assert!(verifies(&token_rsa, &keys) && verifies(&token_ec, &keys));
}

fn self_signed_pem(private_pkcs8_pem: &str) -> String {
    let key = rcgen::KeyPair::from_pem(private_pkcs8_pem).unwrap();
    let params = rcgen::CertificateParams::new(vec!["robot.example".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn google_x509_certificate_map() {
    let (rsa, p256) = (rsa(), p256());
    let map = json!({
        "rsa-kid": self_signed_pem(RSA_PKCS8),
        "ec-kid": self_signed_pem(P256_PKCS8),
        "broken": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    });
    let keys = parse(&map).unwrap();
    assert_eq!(keys.keys().len(), 2);
    assert_eq!(keys.skipped().len(), 1);
    assert_eq!(keys.skipped()[0].kid, Some(Kid::from("broken")));
    let rs = rsa
        .sign_jwt(Some("rsa-kid"), Algorithm::RS256, &claims())
        .unwrap();
    let es = p256
        .sign_jwt(Some("ec-kid"), Algorithm::ES256, &claims())
        .unwrap();
    let wrong_kid = rsa
        .sign_jwt(Some("ec-kid"), Algorithm::RS256, &claims())
        .unwrap();
    assert!(verifies(&rs, &keys) && verifies(&es, &keys));
    assert!(!verifies(&wrong_kid, &keys));
    // A single certificate as a PEM document works too.
    let single = KeySet::parse(self_signed_pem(RSA_PKCS8).as_bytes(), KeySource::Remote).unwrap();
    assert!(verifies(&rs, &single));
}

#[test]
fn roca_weak_modulus_is_refused() {
    // Wycheproof's ROCA key (json_web_key_test.json, "jws_rsa_roca_key"): 2049 bits, e = 65537.
    let file: Value =
        serde_json::from_str(include_str!("fixtures/wycheproof/json_web_key_test.json")).unwrap();
    let group = file["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["comment"] == "jws_rsa_roca_key")
        .unwrap();
    let err = parse(&group["private"]).unwrap_err();
    match err {
        JoseError::NoUsableKeys { skipped } => assert_eq!(skipped[0].reason, SkipReason::RsaRoca),
        other => panic!("{other:?}"),
    }
    // Our own keys do not have the fingerprint.
    parse(&json!({"keys": [jwk(&rsa(), "k", None)]})).unwrap();
}

/// Issue 9 item 15: at most `MAX_KEYS` keys per set, in each of the three formats; one more
/// and the whole document is refused (so a cache keeps its last good set).
#[test]
fn key_sets_with_more_than_max_keys_are_refused() {
    assert_eq!(jose::MAX_KEYS, 100);
    let signer = p256();
    let jwk_list = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| jwk(&signer, &format!("k{i}"), None))
            .collect()
    };
    let cert = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    };
    let cert_map = |n: usize| -> Value {
        Value::Object((0..n).map(|i| (format!("k{i}"), json!(cert))).collect())
    };
    let pem = |n: usize| -> String { P256_SPKI.repeat(n) };

    assert_eq!(
        parse(&json!({ "keys": jwk_list(100) }))
            .unwrap()
            .keys()
            .len(),
        100
    );
    assert_eq!(parse(&cert_map(100)).unwrap().keys().len(), 100);
    assert_eq!(
        KeySet::parse(pem(100).as_bytes(), KeySource::Remote)
            .unwrap()
            .keys()
            .len(),
        100
    );
    let too_many = [
        parse(&json!({ "keys": jwk_list(101) })).unwrap_err(),
        parse(&cert_map(101)).unwrap_err(),
        KeySet::parse(pem(101).as_bytes(), KeySource::Remote).unwrap_err(),
    ];
    for err in too_many {
        assert!(
            matches!(
                err,
                JoseError::JwksTooManyKeys {
                    count: 101,
                    limit: 100
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "Jwks has 101 keys; at most 100 are accepted"
        );
    }
}

/// Issue 9 item 15: a token is tried against at most `MAX_CANDIDATES` keys: a token without
/// `kid` whose key is listed after ten other keys of its algorithm is not verified, one listed
/// tenth is; with its `kid` it is found wherever it is.
#[test]
fn a_token_without_kid_is_tried_against_a_bounded_number_of_keys() {
    assert_eq!(jose::MAX_CANDIDATES, 10);
    let signer = p256();
    let decoys: Vec<Value> = (0..10)
        .map(|i| {
            let other = jose::generate_es256().unwrap().signer().unwrap();
            jwk(&other, &format!("decoy{i}"), None)
        })
        .collect();
    let set_with_real_at = |position: usize| {
        let mut keys = decoys[..position].to_vec();
        keys.push(jwk(&signer, "real", None));
        jwks(&keys, KeySource::Remote)
    };
    let no_kid = signer.sign_jwt(None, Algorithm::ES256, &claims()).unwrap();
    let with_kid = signer
        .sign_jwt(Some("real"), Algorithm::ES256, &claims())
        .unwrap();
    assert!(verifies(&no_kid, &set_with_real_at(9)), "tenth candidate");
    let eleventh = set_with_real_at(10);
    let err = verify(Jwt::parse(&no_kid).unwrap().jws(), &eleventh).unwrap_err();
    assert!(matches!(err, JoseError::VerificationFailed), "{err:?}");
    assert!(verifies(&with_kid, &eleventh), "named by kid");
}
