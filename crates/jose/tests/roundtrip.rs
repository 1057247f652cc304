//! Sign with generated keys and service-account files, verify through every key-set format,
//! and cross-check with an independent implementation (jsonwebtoken).

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use common::*;
use jose::{
    Algorithm, GeneratedKey, Jwt, KeySet, KeySource, ServiceAccountKey, Signer, generate_ed25519,
    generate_es256, generate_rsa_2048, verify,
};
use serde_json::json;

fn generated() -> Vec<GeneratedKey> {
    vec![
        generate_rsa_2048().unwrap(),
        generate_es256().unwrap(),
        generate_ed25519().unwrap(),
    ]
}

fn verifies(token: &str, keys: &KeySet) -> bool {
    verify(Jwt::parse(token).unwrap().jws(), keys).is_ok()
}

fn self_signed_pem(private_pkcs8_pem: &str) -> String {
    let key = rcgen::KeyPair::from_pem(private_pkcs8_pem).unwrap();
    let params = rcgen::CertificateParams::new(vec!["robot.example".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn generated_keys_verify_through_jwks_pem_and_x509() {
    for key in generated() {
        let alg = key.algorithm;
        assert!(
            key.private_pkcs8_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{alg}"
        );
        assert!(
            key.public_spki_pem
                .starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{alg}"
        );
        let signer = key.signer().unwrap();
        assert_eq!(signer.default_algorithm(), alg);
        let token = signer.sign_jwt(Some("k1"), alg, &claims()).unwrap();

        let jwk = key.public_jwk("k1");
        assert_eq!(jwk["alg"], alg.name());
        assert_eq!(jwk["use"], "sig");
        let from_jwks = KeySet::parse(
            json!({ "keys": [jwk] }).to_string().as_bytes(),
            KeySource::Remote,
        )
        .unwrap();
        let from_pem = KeySet::parse(key.public_spki_pem.as_bytes(), KeySource::Remote).unwrap();
        let x509_map = json!({ "k1": self_signed_pem(&key.private_pkcs8_pem) });
        let from_x509 = KeySet::parse(x509_map.to_string().as_bytes(), KeySource::Remote).unwrap();
        for (desc, keys) in [
            ("jwks", &from_jwks),
            ("pem", &from_pem),
            ("x509", &from_x509),
        ] {
            assert!(verifies(&token, keys), "{alg} via {desc}");
        }
        let other = generated()
            .into_iter()
            .find(|k| k.algorithm == alg)
            .unwrap();
        let other_keys =
            KeySet::parse(other.public_spki_pem.as_bytes(), KeySource::Remote).unwrap();
        assert!(!verifies(&token, &other_keys), "{alg} with another key");
        // The JWK export round-trips through our own parser.
        assert_eq!(
            jose::PublicKey::from_pem(&key.public_spki_pem).unwrap(),
            *key.public_key()
        );
    }
}

#[test]
fn signer_refuses_algorithms_its_key_cannot_make() {
    let cases = [
        (
            rsa(),
            vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256],
        ),
        (
            p256(),
            vec![
                Algorithm::ES384,
                Algorithm::RS256,
                Algorithm::EdDSA,
                Algorithm::HS256,
            ],
        ),
        (
            ed25519(),
            vec![Algorithm::ES256, Algorithm::RS256, Algorithm::HS256],
        ),
        (
            Signer::hmac(&[1; 32]),
            vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        ),
    ];
    for (signer, bad) in cases {
        for alg in bad {
            let err = signer.sign_jwt(None, alg, &claims()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("signing algorithm {alg} does not match the key")
            );
        }
    }
    assert!(Signer::from_pkcs8_pem(RSA_SPKI).is_err());
    assert!(Signer::from_pkcs8_pem("not pem").is_err());
}

#[test]
fn service_account_key_files() {
    let key = generate_rsa_2048().unwrap();
    let file = ServiceAccountKey::new_google(
        "my-project",
        "robot@my-project.iam.gserviceaccount.com",
        "123456789012345678901",
        "0123456789abcdef0123456789abcdef01234567",
        &key.private_pkcs8_pem,
    );
    assert_eq!(
        file.client_x509_cert_url,
        "https://www.googleapis.com/robot/v1/metadata/x509/robot%40my-project.iam.gserviceaccount.com"
    );
    let json_text = file.to_json();
    let parsed = ServiceAccountKey::from_json(&json_text).unwrap();
    assert_eq!(parsed, file);
    assert!(
        !format!("{parsed:?}").contains("PRIVATE KEY"),
        "Debug must not print the key"
    );
    let v: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    for field in [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
    ] {
        assert!(v[field].is_string(), "{field}");
    }
    assert_eq!(v["type"], "service_account");

    // The tutorial's token tool: RS256, kid = private_key_id.
    let signer = Signer::from_service_account(&parsed).unwrap();
    let token = signer
        .sign_jwt(Some(&parsed.private_key_id), Algorithm::RS256, &claims())
        .unwrap();
    let certs = json!({ parsed.private_key_id.clone(): self_signed_pem(&parsed.private_key) });
    let keys = KeySet::parse(certs.to_string().as_bytes(), KeySource::Remote).unwrap();
    assert!(verifies(&token, &keys));

    let mut wrong_type = v.clone();
    wrong_type["type"] = "authorized_user".into();
    assert_eq!(
        ServiceAccountKey::from_json(&wrong_type.to_string())
            .unwrap_err()
            .to_string(),
        "service account key file is invalid: [type] is not \"service_account\""
    );
    assert!(ServiceAccountKey::from_json("{}").is_err());
    // An EC P-256 service-account key signs ES256.
    let ec = generate_es256().unwrap();
    let ec_file = ServiceAccountKey::new_google(
        "p",
        "e@p.iam.gserviceaccount.com",
        "1",
        "kid",
        &ec.private_pkcs8_pem,
    );
    let ec_signer = Signer::from_service_account(&ec_file).unwrap();
    assert_eq!(ec_signer.default_algorithm(), Algorithm::ES256);
}

fn jsonwebtoken_validation(alg: jsonwebtoken::Algorithm) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false; // the tests' clock is fixed in 2023
    v.set_audience(&["bookstore.example.com"]);
    v
}

#[test]
fn interop_with_jsonwebtoken() {
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, decode, encode, jwk::Jwk};
    let cases = [
        (generate_rsa_2048().unwrap(), jsonwebtoken::Algorithm::RS256),
        (generate_es256().unwrap(), jsonwebtoken::Algorithm::ES256),
        (generate_ed25519().unwrap(), jsonwebtoken::Algorithm::EdDSA),
    ];
    for (key, jalg) in cases {
        let pem = key.private_pkcs8_pem.as_bytes();
        let encoding = match jalg {
            jsonwebtoken::Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            jsonwebtoken::Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        }
        .unwrap();
        // Theirs -> ours.
        let mut header = Header::new(jalg);
        header.kid = Some("k".into());
        let theirs = encode(&header, &claims(), &encoding).unwrap();
        let keys = KeySet::parse(
            json!({ "keys": [key.public_jwk("k")] })
                .to_string()
                .as_bytes(),
            KeySource::Remote,
        )
        .unwrap();
        assert!(verifies(&theirs, &keys), "{jalg:?} from jsonwebtoken");
        // Ours -> theirs, with the key from our JWK export.
        let ours = key
            .signer()
            .unwrap()
            .sign_jwt(Some("k"), key.algorithm, &claims())
            .unwrap();
        let their_jwk: Jwk = serde_json::from_value(key.public_jwk("k")).unwrap();
        let decoding = DecodingKey::from_jwk(&their_jwk).unwrap();
        let data =
            decode::<serde_json::Value>(&ours, &decoding, &jsonwebtoken_validation(jalg)).unwrap();
        assert_eq!(data.claims, claims(), "{jalg:?} to jsonwebtoken");
    }
}

#[test]
fn hmac_round_trip_with_local_keys() {
    let secret = [42u8; 64];
    let signer = Signer::hmac(&secret);
    let keys = KeySet::parse(
        json!({"keys": [{"kty": "oct", "k": b64(&secret)}]})
            .to_string()
            .as_bytes(),
        KeySource::Local,
    )
    .unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = signer.sign_jwt(None, alg, &claims()).unwrap();
        assert!(verifies(&token, &keys), "{alg}");
    }
    // A 32-byte key serves HS256 only (RFC 7518 3.2: key >= hash output).
    let short = KeySet::parse(
        json!({"keys": [{"kty": "oct", "k": b64(&[1u8; 32])}]})
            .to_string()
            .as_bytes(),
        KeySource::Local,
    )
    .unwrap();
    assert_eq!(
        short.keys()[0].algorithms().collect::<Vec<_>>(),
        vec![Algorithm::HS256]
    );
}
