//! The token service's signing keys over time (a ManualClock moves it) and at rest (the store
//! file read without the service): rotation over real sockets, several servers on one store,
//! no private key in clear in the file, and the key-encryption key check.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use iam::token::{PUBLISH_AHEAD_SECS, RETIRE_MARGIN_SECS};
use iam::{Account, IamError, Kek, Store, TokenService, TokenServiceSettings};
use serde_json::Map;
use testkit::{KeyServer, TestStore, http1};

const T0: u64 = 1_800_000_000;
const HOUR: u64 = 3600;

fn store() -> (tempfile::TempDir, PathBuf, Account) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam.db");
    let account = Store::open(&path)
        .unwrap()
        .create_account("token-user", "my-project", 1)
        .unwrap();
    (dir, path, account)
}

fn account_in(ts: &TestStore) -> Account {
    Store::open(ts.location())
        .unwrap()
        .create_account("token-user", "my-project", 1)
        .unwrap()
}

fn hourly(url: String, kek: &Kek, clock: &clock::ManualClock) -> TokenServiceSettings {
    TokenServiceSettings {
        rotation: Duration::from_secs(HOUR),
        clock: clock.shared(),
        ..TokenServiceSettings::new(url, kek.clone())
    }
}

fn kid(token: &str) -> String {
    jose::Jwt::parse(token)
        .unwrap()
        .header()
        .kid
        .clone()
        .unwrap()
        .0
}

/// The kids of the served JWKS and X.509 map (asserted equal), fetched over the socket.
async fn served_kids(server: &KeyServer) -> Vec<String> {
    let jwks = http1(server.addr, "GET", "/oauth2/v3/certs", &[], Vec::new()).await;
    let x509 = http1(server.addr, "GET", "/oauth2/v1/certs", &[], Vec::new()).await;
    let mut from_jwks: Vec<String> = jwks.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    let mut from_x509: Vec<String> = x509.json().as_object().unwrap().keys().cloned().collect();
    from_jwks.sort();
    from_x509.sort();
    assert_eq!(from_jwks, from_x509);
    from_jwks
}

/// Whether `token`'s signature verifies against the served JWKS and against the X.509 map.
async fn verifies(server: &KeyServer, token: &str) -> bool {
    let mut results = Vec::new();
    for path in ["/oauth2/v3/certs", "/oauth2/v1/certs"] {
        let doc = http1(server.addr, "GET", path, &[], Vec::new()).await;
        let set = jose::KeySet::parse(doc.body.as_bytes(), jose::KeySource::Remote).unwrap();
        let jwt = jose::Jwt::parse(token).unwrap();
        results.push(jose::verify(jwt.jws(), &set).is_ok());
    }
    assert_eq!(results[0], results[1], "JWKS and X.509 map disagree");
    results[0]
}

async fn rotation_publishes_ahead_signs_in_turn_and_retires_after_the_tokens_expired(
    ts: TestStore,
) {
    let account = account_in(&ts);
    let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let kek = Kek::generate().unwrap();
    let (server, tokens) =
        KeyServer::start_tokens(ts.location(), |url| hourly(url, &kek, &clock)).await;
    let at = |secs: u64| clock.set(UNIX_EPOCH + Duration::from_secs(T0 + secs));

    let first = tokens.issue_id_token(&account, "aud", true).unwrap();
    let a = kid(&first);
    assert_eq!(served_kids(&server).await, std::slice::from_ref(&a));
    assert!(verifies(&server, &first).await);

    // One second before the successor is due: nothing new.
    at(HOUR - PUBLISH_AHEAD_SECS - 1);
    assert_eq!(served_kids(&server).await, std::slice::from_ref(&a));
    // Due: the successor is published, publish_ahead (> the certs' max-age) before it signs.
    at(HOUR - PUBLISH_AHEAD_SECS);
    let kids = served_kids(&server).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    let b = kids.iter().find(|k| **k != a).unwrap().clone();
    const { assert!(PUBLISH_AHEAD_SECS > iam::CACHE_MAX_AGE_SECS) };
    let still_a = tokens.issue_id_token(&account, "aud", true).unwrap();
    assert_eq!(
        kid(&still_a),
        a,
        "the successor must not sign before its time"
    );

    // The successor signs; the old key's tokens keep verifying against the published keys.
    at(HOUR);
    let second = tokens.issue_id_token(&account, "aud", true).unwrap();
    assert_eq!(kid(&second), b);
    assert!(verifies(&server, &second).await);
    assert!(verifies(&server, &still_a).await);

    // The last token of the old key (signed just before HOUR) expires at 2 h: the key stays
    // published past that, until 2 h + the retire margin.
    at(2 * HOUR + RETIRE_MARGIN_SECS - 1);
    assert!(served_kids(&server).await.contains(&a));
    assert!(verifies(&server, &still_a).await);
    at(2 * HOUR + RETIRE_MARGIN_SECS);
    let kids = served_kids(&server).await;
    assert!(!kids.contains(&a), "{kids:?}");
    assert!(kids.contains(&b));
    assert!(!verifies(&server, &first).await);
    assert!(verifies(&server, &second).await);
    server.stop().await;
}

async fn servers_sharing_a_store_make_one_successor_and_sign_with_the_same_key(ts: TestStore) {
    let account = account_in(&ts);
    let path = ts.location();
    let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let kek = Kek::generate().unwrap();
    let one = TokenService::open(path, hourly("http://iam.test".into(), &kek, &clock)).unwrap();
    let two = TokenService::open(path, hourly("http://iam.test".into(), &kek, &clock)).unwrap();
    assert_eq!(one.published_keys().unwrap(), two.published_keys().unwrap());
    clock.advance(Duration::from_secs(HOUR - PUBLISH_AHEAD_SECS));
    let (a, b) = (one.clone(), two.clone());
    let t1 = std::thread::spawn(move || a.published_keys().unwrap());
    let t2 = std::thread::spawn(move || b.published_keys().unwrap());
    let (k1, k2) = (t1.join().unwrap(), t2.join().unwrap());
    assert_eq!(k1.len(), 2);
    assert_eq!(k1, k2);
    clock.advance(Duration::from_secs(PUBLISH_AHEAD_SECS));
    let x = one.issue_id_token(&account, "aud", false).unwrap();
    let y = two.issue_id_token(&account, "aud", false).unwrap();
    assert_eq!(kid(&x), kid(&y));
    assert_eq!(kid(&x), k1[1].key_id);
}

/// Every byte string of the store's files (database and WAL) and of every column of every row.
fn contents(path: &Path) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if let Ok(bytes) = std::fs::read(&file) {
            all.push(bytes);
        }
    }
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        all.push(t.to_vec());
                    }
                    _ => {}
                }
            }
        }
    }
    all
}

// PKCS#8's start: version INTEGER 0, then the rsaEncryption AlgorithmIdentifier. (A certificate
// or a SubjectPublicKeyInfo has the identifier without the version before it.)
const PKCS8_RSA: &[u8] = &[
    0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_store_file_alone_yields_no_private_key_and_refuses_another_kek() {
    let (_dir, path, account) = store();
    let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    let kek = Kek::generate().unwrap();
    let tokens = TokenService::open(&path, hourly("http://iam.test".into(), &kek, &clock)).unwrap();
    // Token-service keys (two, after a rotation) and an account key for signJwt.
    tokens.issue_id_token(&account, "aud", true).unwrap();
    clock.advance(Duration::from_secs(HOUR));
    tokens.issue_id_token(&account, "aud", true).unwrap();
    let (account_kid, _) = tokens.sign_jwt_as(&account, &Map::new()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let managed: i64 = conn
        .query_row("SELECT count(*) FROM managed_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(managed, 3);
    drop(conn);

    for bytes in contents(&path) {
        assert!(
            !holds(&bytes, b"PRIVATE KEY"),
            "a PEM private key in the store"
        );
        assert!(!holds(&bytes, PKCS8_RSA), "a DER private key in the store");
        assert!(jose::Signer::from_pkcs8_der(&bytes).is_err());
    }
    // Sanity of the detector: a private key PEM and its DER would have been caught.
    let sample = jose::generate_rsa_2048().unwrap();
    assert!(holds(sample.private_pkcs8_pem.as_bytes(), b"PRIVATE KEY"));
    let der = base64_der(&sample.private_pkcs8_pem);
    assert!(holds(&der, PKCS8_RSA));

    // Another KEK: refused at start, with the clear error; the right one works.
    drop(tokens);
    let other = Kek::generate().unwrap();
    let err =
        TokenService::open(&path, hourly("http://iam.test".into(), &other, &clock)).unwrap_err();
    assert!(matches!(err, IamError::KekMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("start with the key-encryption key the store was used with"),
        "{err}"
    );
    let again = TokenService::open(&path, hourly("http://iam.test".into(), &kek, &clock)).unwrap();
    assert_eq!(
        again.sign_jwt_as(&account, &Map::new()).unwrap().0,
        account_kid
    );

    // A sealed key moved onto another row does not open (the AAD binds it to its key id).
    drop(again);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE managed_keys SET sealed_private_key =
           (SELECT sealed_private_key FROM managed_keys WHERE key_id = ?1)
         WHERE owner = 'token-service'",
        [&account_kid],
    )
    .unwrap();
    drop(conn);
    let err =
        TokenService::open(&path, hourly("http://iam.test".into(), &kek, &clock)).unwrap_err();
    assert!(matches!(err, IamError::Unseal { .. }), "{err:?}");
}

fn base64_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn signing_key_rotation_is_bounded() {
    let (_dir, path, _) = store();
    let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(T0));
    for secs in [HOUR - 1, 90 * 24 * HOUR + 1] {
        let settings = TokenServiceSettings {
            rotation: Duration::from_secs(secs),
            ..hourly("http://iam.test".into(), &Kek::generate().unwrap(), &clock)
        };
        assert!(matches!(
            TokenService::open(&path, settings),
            Err(IamError::RotationOutOfRange { .. })
        ));
    }
}

testkit::store_tests!(async:
    rotation_publishes_ahead_signs_in_turn_and_retires_after_the_tokens_expired,
    servers_sharing_a_store_make_one_successor_and_sign_with_the_same_key,
);
