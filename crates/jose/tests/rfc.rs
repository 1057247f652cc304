//! Interop vectors from the RFCs: signatures we did not make.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use jose::{Algorithm, Jws, Jwt, KeySet, KeySource, verify};
use serde_json::json;

/// RFC 7515 A.1-A.3 share this payload:
/// `{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}`
const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

fn set(jwk: serde_json::Value, source: KeySource) -> KeySet {
    KeySet::parse(json!({ "keys": [jwk] }).to_string().as_bytes(), source).unwrap()
}

fn assert_verifies(token: &str, keys: &KeySet, alg: Algorithm) {
    let jwt = Jwt::parse(token).unwrap();
    assert_eq!(jwt.header().alg, alg);
    assert_eq!(jwt.claims().iss.as_deref(), Some("joe"));
    assert_eq!(jwt.claims().exp, Some(jose::UnixTime(1_300_819_380)));
    assert_eq!(jwt.claims().all["http://example.com/is_root"], true);
    verify(jwt.jws(), keys).unwrap();
    // One changed payload character breaks it.
    let forged = token.replacen(".eyJpc3MiOiJqb2Ui", ".eyJpc3MiOiJqb2Yi", 1);
    assert!(verify(Jwt::parse(&forged).unwrap().jws(), keys).is_err());
}

#[test]
fn rfc7515_a1_hs256_with_a_local_oct_key() {
    // Header: {"typ":"JWT",\r\n "alg":"HS256"}
    let token = format!(
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
    let jwk = json!({"kty": "oct",
        "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"});
    assert_verifies(
        &token,
        &set(jwk.clone(), KeySource::Local),
        Algorithm::HS256,
    );
    assert!(
        KeySet::parse(
            json!({ "keys": [jwk] }).to_string().as_bytes(),
            KeySource::Remote
        )
        .is_err()
    );
}

#[test]
fn rfc7515_a2_rs256() {
    // Header: {"alg":"RS256"}
    let token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.\
         cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
    );
    let n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    let keys = set(
        json!({"kty": "RSA", "n": n, "e": "AQAB"}),
        KeySource::Remote,
    );
    assert_verifies(&token, &keys, Algorithm::RS256);
}

#[test]
fn rfc7515_a3_es256() {
    // Header: {"alg":"ES256"}
    let token = format!(
        "eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.\
         DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    );
    let keys = set(
        json!({"kty": "EC", "crv": "P-256",
               "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
               "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
        KeySource::Remote,
    );
    assert_verifies(&token, &keys, Algorithm::ES256);
}

#[test]
fn rfc8037_a4_ed25519() {
    // Header: {"alg":"EdDSA"}; payload: the text "Example of Ed25519 signing" (not a JWT).
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
                 hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let keys = set(
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        KeySource::Remote,
    );
    let jws = Jws::parse(token).unwrap();
    assert_eq!(jws.payload(), b"Example of Ed25519 signing");
    verify(&jws, &keys).unwrap();
    assert!(
        Jwt::parse(token).is_err(),
        "the payload is not a claims set"
    );
}
