//! One-shot fetches (`fetch_once`, the code path the cache uses) against a real local key
//! server: formats, schemes, discovery, and every way a fetch must fail.

mod common;

use std::time::{Duration, Instant};

use common::{init_logs, kids_of, provider};
use jose::{Algorithm, JoseError, KeySource, SkipReason};
use keysets::test_server::{self, KeyServer, Reply, TestPki};
use keysets::{FetchError, JwksSettings, discovery_url, fetch_once};
use service_config::Issuer;

fn settings() -> JwksSettings {
    JwksSettings {
        fetch_timeout: Duration::from_millis(500),
        ..JwksSettings::default()
    }
}

#[tokio::test]
async fn fetches_jwks_x509_map_and_pem_over_http() {
    init_logs();
    let a = jose::generate_rsa_2048().unwrap();
    let b = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set(
        "/jwks",
        Reply::json(test_server::jwks(&[("a", &a), ("b", &b)])),
    );
    server.set(
        "/x509",
        Reply::json(test_server::x509_map(&[("a", &a), ("b", &b)]).unwrap()),
    );
    server.set("/pem", Reply::pem(test_server::pem(&[&a, &b])));

    let jwks = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap();
    assert_eq!(kids_of(&jwks), ["a", "b"]);
    assert_eq!(jwks.source(), KeySource::Remote);

    let x509 = fetch_once(
        &provider("p", "iss", Some(server.url("/x509"))),
        &settings(),
    )
    .await
    .unwrap();
    let mut x509_kids = kids_of(&x509);
    x509_kids.sort();
    assert_eq!(x509_kids, ["a", "b"]);

    let pem = fetch_once(&provider("p", "iss", Some(server.url("/pem"))), &settings())
        .await
        .unwrap();
    assert_eq!(kids_of(&pem), ["-", "-"]);
    for path in ["/jwks", "/x509", "/pem"] {
        assert_eq!(server.hits(path), 1, "{path}");
    }
}

#[tokio::test]
async fn non_2xx_is_an_error() {
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::status(503));
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::HttpStatus { status: 503, .. }),
        "{err:?}"
    );
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/unset"))),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_is_a_parse_error() {
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json("<html>not a key set</html>"));
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Parse {
                source: JoseError::JwksBadJson,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn redirects_are_refused_and_not_followed() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/target", Reply::json(test_server::jwks(&[("a", &a)])));
    server.set("/jwks", Reply::redirect(server.url("/target")));
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    match &err {
        FetchError::RedirectRefused {
            status, location, ..
        } => {
            assert_eq!(*status, 302);
            assert_eq!(location.as_deref(), Some(server.url("/target").as_str()));
        }
        other => panic!("want RedirectRefused, got {other:?}"),
    }
    assert_eq!(
        server.hits("/target"),
        0,
        "the redirect must not be followed"
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set(
        "/jwks",
        Reply::slow(
            Duration::from_secs(5),
            Reply::json(test_server::jwks(&[("a", &a)])),
        ),
    );
    let started = Instant::now();
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(450),
        "gave up too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "timeout not enforced: {took:?}"
    );
}

#[tokio::test]
async fn size_cap_by_content_length() {
    let server = KeyServer::start().await.unwrap();
    // A valid JSON document just over 1 MiB, sent with Content-Length.
    let body = format!("{{\"keys\": []}}{}", " ".repeat(1024 * 1024));
    server.set("/big", Reply::json(body));
    let err = fetch_once(&provider("p", "iss", Some(server.url("/big"))), &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn size_cap_while_streaming_without_content_length() {
    let server = KeyServer::start().await.unwrap();
    // 256 MiB of whitespace, chunked: only a cap enforced while streaming stops this in time.
    server.set("/endless", Reply::endless_whitespace(256 * 1024 * 1024));
    let s = JwksSettings {
        fetch_timeout: Duration::from_secs(10),
        ..JwksSettings::default()
    };
    let started = Instant::now();
    let err = fetch_once(&provider("p", "iss", Some(server.url("/endless"))), &s)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_exactly_at_the_cap_is_accepted() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    let jwks = test_server::jwks(&[("a", &a)]);
    let s = JwksSettings {
        max_body_bytes: jwks.len() as u64,
        ..settings()
    };
    server.set("/jwks", Reply::json(jwks.clone()));
    let set = fetch_once(&provider("p", "iss", Some(server.url("/jwks"))), &s)
        .await
        .unwrap();
    assert_eq!(kids_of(&set), ["a"]);
    let smaller = JwksSettings {
        max_body_bytes: jwks.len() as u64 - 1,
        ..settings()
    };
    let err = fetch_once(&provider("p", "iss", Some(server.url("/jwks"))), &smaller)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn server_down_is_a_transport_error() {
    let server = KeyServer::start().await.unwrap();
    let url = server.url("/jwks");
    server.stop().await;
    let err = fetch_once(&provider("p", "iss", Some(url)), &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn hmac_keys_only_from_local_files() {
    let secret = b"0123456789abcdef0123456789abcdef-local-secret";
    let doc = test_server::hmac_jwks("h", secret);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, &doc).unwrap();
    let url = format!("file://{}", path.display());

    let local = fetch_once(&provider("p", "iss", Some(url)), &settings())
        .await
        .unwrap();
    assert_eq!(local.source(), KeySource::Local);
    assert_eq!(kids_of(&local), ["h"]);
    let token = jose::Signer::hmac(secret)
        .sign_jwt(
            Some("h"),
            Algorithm::HS256,
            &serde_json::json!({"iss": "iss"}),
        )
        .unwrap();
    let jws = jose::Jws::parse(&token).unwrap();
    jose::verify(&jws, &local).unwrap();

    // The same document served over HTTP: the HMAC key is skipped, leaving no usable key.
    let server = KeyServer::start().await.unwrap();
    server.set("/jwks", Reply::json(doc));
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    match err {
        FetchError::Parse {
            source: JoseError::NoUsableKeys { skipped },
            ..
        } => assert_eq!(skipped[0].reason, SkipReason::HmacFromRemote),
        other => panic!("want NoUsableKeys, got {other:?}"),
    }
}

#[tokio::test]
async fn file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file://{}", dir.path().join("missing.json").display());
    let err = fetch_once(&provider("p", "iss", Some(missing)), &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::FileRead { .. }), "{err:?}");

    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 1024 * 1024 + 1]).unwrap();
    let err = fetch_once(
        &provider("p", "iss", Some(format!("file://{}", big.display()))),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");

    let err = fetch_once(
        &provider("p", "iss", Some("ftp://example/keys".into())),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
}

#[test]
fn discovery_url_follows_esp() {
    let cases = [
        (
            "accounts.google.com",
            "https://accounts.google.com/.well-known/openid-configuration",
        ),
        (
            "https://accounts.google.com/",
            "https://accounts.google.com/.well-known/openid-configuration",
        ),
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/.well-known/openid-configuration",
        ),
        (
            "https://example.com/tenant/",
            "https://example.com/tenant/.well-known/openid-configuration",
        ),
    ];
    for (issuer, want) in cases {
        assert_eq!(discovery_url(&Issuer::new(issuer)), want, "{issuer}");
    }
}

#[tokio::test]
async fn openid_discovery_when_jwks_uri_is_absent() {
    let a = jose::generate_rsa_2048().unwrap();
    let server = KeyServer::start().await.unwrap();
    server.set("/certs", Reply::json(test_server::jwks(&[("a", &a)])));
    server.set(
        "/.well-known/openid-configuration",
        Reply::json(
            serde_json::json!({"issuer": server.url(""), "jwks_uri": server.url("/certs")})
                .to_string(),
        ),
    );
    // The issuer with a trailing slash: trimmed before the well-known path is appended.
    let issuer = format!("{}/", server.url(""));
    let set = fetch_once(&provider("p", &issuer, None), &settings())
        .await
        .unwrap();
    assert_eq!(kids_of(&set), ["a"]);
    assert_eq!(set.source(), KeySource::Remote);
    assert_eq!(server.hits("/.well-known/openid-configuration"), 1);
    assert_eq!(server.hits("/certs"), 1);
}

#[tokio::test]
async fn discovery_failures() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("keys.json");
    std::fs::write(&local, test_server::hmac_jwks("h", &[7u8; 32])).unwrap();
    let server = KeyServer::start().await.unwrap();
    let well_known = "/.well-known/openid-configuration";
    let issuer = server.url("");

    server.set(well_known, Reply::json(r#"{"issuer": "x"}"#));
    let err = fetch_once(&provider("p", &issuer, None), &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::DiscoveryMissingJwksUri { .. }),
        "{err:?}"
    );

    server.set(well_known, Reply::json("[1, 2]"));
    let err = fetch_once(&provider("p", &issuer, None), &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::DiscoveryBadJson { .. }),
        "{err:?}"
    );

    // A remote document must not make us read local files (their HMAC keys are trusted).
    server.set(
        well_known,
        Reply::json(
            serde_json::json!({"jwks_uri": format!("file://{}", local.display())}).to_string(),
        ),
    );
    let err = fetch_once(&provider("p", &issuer, None), &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");

    server.set(well_known, Reply::status(500));
    let err = fetch_once(&provider("p", &issuer, None), &settings())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::HttpStatus { status: 500, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let a = jose::generate_es256().unwrap();
    let pki = TestPki::generate().unwrap();
    let server = KeyServer::start_tls(&pki).await.unwrap();
    server.set("/jwks", Reply::json(test_server::jwks(&[("a", &a)])));
    let url = server.url("/jwks");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Without the CA: the server's certificate is not trusted.
    let err = fetch_once(&provider("p", "iss", Some(url.clone())), &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
    assert!(err.chain().contains("UnknownIssuer"), "{}", err.chain());

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let with_ca = JwksSettings {
        extra_ca: Some(ca),
        ..settings()
    };
    let set = fetch_once(&provider("p", "iss", Some(url)), &with_ca)
        .await
        .unwrap();
    assert_eq!(kids_of(&set), ["a"]);
}

#[tokio::test]
async fn bad_extra_ca_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider("p", "iss", Some("https://127.0.0.1:1/jwks".into()));
    let missing = JwksSettings {
        extra_ca: Some(dir.path().join("missing.pem")),
        ..settings()
    };
    let err = fetch_once(&p, &missing).await.unwrap_err();
    assert!(matches!(err, FetchError::CaRead { .. }), "{err:?}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let err = fetch_once(
        &p,
        &JwksSettings {
            extra_ca: Some(empty),
            ..settings()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::CaInvalid { .. }), "{err:?}");
}

/// Issue 9 item 15: a discovery document fetched over https that points at an http `jwks_uri`
/// is refused with a clear error; one pointing at https is followed.
#[tokio::test]
async fn https_discovery_may_not_point_at_an_http_jwks_uri() {
    let a = jose::generate_es256().unwrap();
    let pki = TestPki::generate().unwrap();
    let tls = KeyServer::start_tls(&pki).await.unwrap();
    let plain = KeyServer::start().await.unwrap();
    plain.set("/certs", Reply::json(test_server::jwks(&[("a", &a)])));
    tls.set("/certs", Reply::json(test_server::jwks(&[("a", &a)])));
    let well_known = "/.well-known/openid-configuration";
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let with_ca = JwksSettings {
        extra_ca: Some(ca),
        ..settings()
    };

    tls.set(
        well_known,
        Reply::json(serde_json::json!({"jwks_uri": plain.url("/certs")}).to_string()),
    );
    let err = fetch_once(&provider("p", &tls.url(""), None), &with_ca)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("a discovery document fetched over https may not point at an http jwks_uri"),
        "{err}"
    );
    assert_eq!(plain.hits("/certs"), 0, "the http URL is never fetched");

    tls.set(
        well_known,
        Reply::json(serde_json::json!({"jwks_uri": tls.url("/certs")}).to_string()),
    );
    let set = fetch_once(&provider("p", &tls.url(""), None), &with_ca)
        .await
        .unwrap();
    assert_eq!(kids_of(&set), ["a"]);
}

/// Issue 9 item 15: a key set listing more than `jose::MAX_KEYS` keys is a parse error (so
/// the cache keeps its last good set, as for garbage).
#[tokio::test]
async fn a_set_with_too_many_keys_is_refused() {
    let a = jose::generate_es256().unwrap();
    let server = KeyServer::start().await.unwrap();
    let kids: Vec<String> = (0..=jose::MAX_KEYS).map(|i| format!("k{i}")).collect();
    let many: Vec<(&str, &jose::GeneratedKey)> = kids.iter().map(|k| (k.as_str(), &a)).collect();
    server.set("/jwks", Reply::json(test_server::jwks(&many)));
    let err = fetch_once(
        &provider("p", "iss", Some(server.url("/jwks"))),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Parse {
                source: JoseError::JwksTooManyKeys { .. },
                ..
            }
        ),
        "{err:?}"
    );
}
