//! The authentication decision, measured next to the bare signature verification it wraps:
//! `authenticate` on a verified-token cache hit, on a miss (parse + claims + key lookup +
//! signature) per algorithm, and aws-lc-rs verifying the same token's signature alone. The ratio
//! miss / bare is the overhead of our own code (issue 6 target: at most 1.2).
//!
//!     cargo bench -p esprit-authn --bench decision
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authn::{AuthInputs, AuthPolicy, KeySets, NoCache, VerifiedToken, VerifiedTokens};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jose::{GeneratedKey, KeySet, KeySource};
use serde_json::json;
use service_config::{Descriptor, ProviderId};

const ISSUER: &str = "bench@bench-project.iam.gserviceaccount.com";

/// A minimal in-memory cache, keyed by the whole token as the trait requires.
#[derive(Default)]
struct MapCache(RwLock<HashMap<Box<str>, Arc<VerifiedToken>>>);

impl VerifiedTokens for MapCache {
    fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        self.0.read().unwrap().get(token).cloned()
    }
    fn put(&self, token: &str, verified: Arc<VerifiedToken>) {
        self.0.write().unwrap().insert(Box::from(token), verified);
    }
}

fn policy() -> Arc<authn::MethodPolicy> {
    // The Bookstore's descriptor is not a dependency here; a one-method API is enough.
    let fds = protox_free_descriptor();
    let yaml = format!(
        "type: google.api.Service\nconfig_version: 3\nname: bench.example.com\napis:\n- name: bench.Bench\n\
         authentication:\n  providers:\n  - id: p\n    issuer: {ISSUER}\n    jwks_uri: https://keys.example.com/jwks\n  \
         rules:\n  - selector: \"*\"\n    requirements:\n    - provider_id: p\n\
         usage:\n  rules:\n  - selector: \"*\"\n    allow_unregistered_calls: true\n"
    );
    let config =
        service_config::from_yaml(&yaml, Descriptor::from_file_descriptor_set(fds).unwrap())
            .unwrap();
    AuthPolicy::from_config(&config)
        .method("/bench.Bench/Call")
        .unwrap()
        .clone()
}

/// A FileDescriptorSet for `package bench; service Bench { rpc Call(Empty) returns (Empty); }`,
/// encoded by hand with prost's types so the bench needs no proto compiler.
fn protox_free_descriptor() -> Vec<u8> {
    use prost::Message;
    use prost_types::{
        DescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
        ServiceDescriptorProto,
    };
    let file = FileDescriptorProto {
        name: Some("bench.proto".into()),
        package: Some("bench".into()),
        message_type: vec![DescriptorProto {
            name: Some("Empty".into()),
            ..Default::default()
        }],
        service: vec![ServiceDescriptorProto {
            name: Some("Bench".into()),
            method: vec![MethodDescriptorProto {
                name: Some("Call".into()),
                input_type: Some(".bench.Empty".into()),
                output_type: Some(".bench.Empty".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

fn token(key: &GeneratedKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISSUER, "sub": "s", "aud": "bench.example.com", "iat": now, "exp": now + 3600});
    key.signer()
        .unwrap()
        .sign_jwt(Some("k"), key.algorithm, &claims)
        .unwrap()
}

fn headers(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h.insert("content-type", "application/grpc".parse().unwrap());
    h
}

fn bare_algorithm(alg: jose::Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        jose::Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        jose::Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        jose::Algorithm::EdDSA => &signature::ED25519,
        other => panic!("no bare bench for {other}"),
    }
}

/// The raw public key bytes aws-lc-rs verifies with: DER RSAPublicKey for RSA, the uncompressed
/// point for P-256, the 32 bytes for Ed25519 — taken from the SPKI.
fn raw_public_key(key: &GeneratedKey) -> Vec<u8> {
    let pem = &key.public_spki_pem;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // The subjectPublicKey BIT STRING is the last element of the SPKI: its content after the
    // unused-bits byte is what aws-lc-rs wants for all three key types.
    let (_, bits) = x509_last_bit_string(&der);
    bits.to_vec()
}

fn x509_last_bit_string(der: &[u8]) -> ((), &[u8]) {
    // Walk the outer SEQUENCE, skip AlgorithmIdentifier, read the BIT STRING.
    fn len(bytes: &[u8]) -> (usize, usize) {
        if bytes[0] < 0x80 {
            (bytes[0] as usize, 1)
        } else {
            let n = (bytes[0] & 0x7f) as usize;
            let mut v = 0usize;
            for b in &bytes[1..=n] {
                v = (v << 8) | *b as usize;
            }
            (v, 1 + n)
        }
    }
    let (_, l) = len(&der[1..]);
    let body = &der[1 + l..];
    let (alg_len, l2) = len(&body[1..]);
    let rest = &body[1 + l2 + alg_len..];
    let (bits_len, l3) = len(&rest[1..]);
    ((), &rest[1 + l3 + 1..1 + l3 + bits_len])
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let skew = Duration::from_secs(60);
    let uri: http::Uri = "/bench.Bench/Call".parse().unwrap();
    for key in [
        jose::generate_rsa_2048().unwrap(),
        jose::generate_es256().unwrap(),
        jose::generate_ed25519().unwrap(),
    ] {
        let alg = key.algorithm;
        let jwks = json!({"keys": [key.public_jwk("k")]}).to_string();
        let set = Arc::new(KeySet::parse(jwks.as_bytes(), KeySource::Remote).unwrap());
        let mut keys: HashMap<ProviderId, Arc<KeySet>> = HashMap::new();
        keys.insert(ProviderId::new("p"), set);
        let token = token(&key);
        let headers = headers(&token);
        let now = jose::UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );

        let miss = AuthInputs {
            keys: &keys as &dyn KeySets,
            cache: &NoCache,
            now,
            skew,
        };
        authn::authenticate(&policy, &headers, &uri, &miss).expect("the bench token must pass");
        c.bench_function(&format!("authenticate/miss/{alg}"), |b| {
            b.iter(|| authn::authenticate(&policy, &headers, &uri, &miss).unwrap())
        });

        let cache = MapCache::default();
        let hit = AuthInputs {
            keys: &keys as &dyn KeySets,
            cache: &cache,
            now,
            skew,
        };
        authn::authenticate(&policy, &headers, &uri, &hit).unwrap();
        c.bench_function(&format!("authenticate/hit/{alg}"), |b| {
            b.iter(|| authn::authenticate(&policy, &headers, &uri, &hit).unwrap())
        });

        let (signing_input, signature_b64) = token.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature_b64)
            .unwrap();
        // The key parsed once, as a careful verifier (and jose) keeps it.
        let public = ParsedPublicKey::new(bare_algorithm(alg), raw_public_key(&key)).unwrap();
        public
            .verify_sig(signing_input.as_bytes(), &signature)
            .expect("bare verification must pass");
        c.bench_function(&format!("bare_verify/{alg}"), |b| {
            b.iter(|| {
                public
                    .verify_sig(signing_input.as_bytes(), &signature)
                    .unwrap()
            })
        });
        // The part of a miss that is not the signature: parsing the token.
        c.bench_function(&format!("jwt_parse/{alg}"), |b| {
            b.iter(|| jose::Jwt::parse(&token).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
