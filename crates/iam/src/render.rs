//! The two public-key documents Google serves for a service account, rendered from stored keys.
//! Only enabled keys are rendered; disabled keys are left out here even if a caller passes them.

use serde_json::{Map, Value, json};

use crate::Result;
use crate::model::{KeyStatus, StoredKey};

fn published(keys: &[StoredKey]) -> impl Iterator<Item = &StoredKey> {
    keys.iter().filter(|k| k.state == KeyStatus::Enabled)
}

/// `GET /robot/v1/metadata/x509/{email}`: a JSON object mapping key id to PEM certificate,
/// pretty-printed as Google does. `{}` when no key is enabled.
pub fn x509_map(keys: &[StoredKey]) -> String {
    let map: Map<String, Value> = published(keys)
        .map(|k| (k.key_id.clone(), Value::String(k.certificate_pem.clone())))
        .collect();
    // Serializing a map of strings cannot fail.
    serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default()
}

/// `GET /service_accounts/v1/jwk/{email}`: `{"keys": [...]}` with `kty`, `alg`, `use: "sig"`,
/// `kid` and `n`/`e` (RSA) or `crv`/`x`/`y` (EC). `{"keys": []}` when no key is enabled.
pub fn jwks(keys: &[StoredKey]) -> Result<String> {
    let jwks = published(keys)
        .map(|k| {
            let public = jose::PublicKey::from_pem(&k.public_key_pem)?;
            Ok(public.to_jwk(Some(&k.key_id), Some(k.algorithm.jose())))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(serde_json::to_string_pretty(&json!({ "keys": jwks })).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::keyfile::new_key;
    use crate::model::{Account, KeyAlgorithm, KeyServerUrl};

    fn keys() -> Vec<StoredKey> {
        let account = Account {
            email: "signer-one@my-project.iam.gserviceaccount.com".into(),
            account_id: "signer-one".into(),
            project_id: "my-project".into(),
            unique_id: "100000000000000000001".into(),
            created: 0,
        };
        let base = KeyServerUrl::default();
        let mut rsa = new_key(&account, KeyAlgorithm::Rs256, &base, 10)
            .unwrap()
            .stored;
        rsa.key_id = "a".repeat(40);
        let mut ec = new_key(&account, KeyAlgorithm::Es256, &base, 10)
            .unwrap()
            .stored;
        ec.key_id = "b".repeat(40);
        let mut off = new_key(&account, KeyAlgorithm::Es256, &base, 10)
            .unwrap()
            .stored;
        off.key_id = "c".repeat(40);
        off.state = KeyStatus::Disabled;
        vec![rsa, ec, off]
    }

    #[test]
    fn x509_map_lists_enabled_certificates_by_key_id() {
        let keys = keys();
        let map: Value = serde_json::from_str(&x509_map(&keys)).unwrap();
        let map = map.as_object().unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&"a".repeat(40)], keys[0].certificate_pem.as_str());
        assert_eq!(map[&"b".repeat(40)], keys[1].certificate_pem.as_str());
        assert!(!map.contains_key(&"c".repeat(40)));
        // jose reads it as the X.509-map key-set format.
        let set = jose::KeySet::parse(x509_map(&keys).as_bytes(), jose::KeySource::Remote).unwrap();
        assert_eq!(set.keys().len(), 2);
        assert_eq!(x509_map(&[]), "{}");
    }

    #[test]
    fn jwks_has_google_members() {
        let keys = keys();
        let doc: Value = serde_json::from_str(&jwks(&keys).unwrap()).unwrap();
        let list = doc["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        let rsa = &list[0];
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["kid"], "a".repeat(40));
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(rsa["n"].as_str().unwrap().len(), 342); // 256 bytes, base64url
        let ec = &list[1];
        assert_eq!(ec["kty"], "EC");
        assert_eq!(ec["alg"], "ES256");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(ec["kid"], "b".repeat(40));
        assert_eq!(ec["x"].as_str().unwrap().len(), 43);
        assert_eq!(ec["y"].as_str().unwrap().len(), 43);
        let set =
            jose::KeySet::parse(jwks(&keys).unwrap().as_bytes(), jose::KeySource::Remote).unwrap();
        assert_eq!(set.keys().len(), 2);
        let empty: Value = serde_json::from_str(&jwks(&[]).unwrap()).unwrap();
        assert_eq!(empty, json!({"keys": []}));
    }
}
