//! CORS over real sockets: preflights answered by the proxy before any credential check (or
//! passed to the backend with `endpoints[].allow_cors`), origins allowed exactly or by regex,
//! and the headers on every answer, rejections included, so a page can read its error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use proxy::{CorsPreset, CorsSettings};
use testkit::HttpReply;

const UNARY: &str = "/esprit.echo.v1.Echo/Unary";
const APP: &str = "https://app.example";

/// Echo behind a JWT on every method (the key server is never reachable: a call that needed a
/// key would fail, a preflight must not need one).
fn jwt_config(extra: &str) -> service_config::ServiceConfig {
    echo_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: consumer
    issuer: web@consumer.example
    jwks_uri: http://127.0.0.1:1/jwks
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
{extra}"#
    ))
}

async fn proxy_with(
    backend: std::net::SocketAddr,
    config: &service_config::ServiceConfig,
    cors: Option<CorsSettings>,
) -> RunningProxy {
    let mut settings = settings(backend);
    settings.cors = cors;
    RunningProxy::start(config, settings).await
}

fn basic(origin: &str) -> CorsSettings {
    CorsSettings {
        allow_origin: origin.to_owned(),
        ..CorsSettings::new(CorsPreset::Basic)
    }
}

async fn preflight(addr: std::net::SocketAddr, origin: &str) -> HttpReply {
    testkit::servers::http1(
        addr,
        "OPTIONS",
        UNARY,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            ),
        ],
        Vec::new(),
    )
    .await
}

fn assert_no_cors(reply: &HttpReply) {
    for (name, _) in &reply.headers {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{name} on {reply:?}"
        );
    }
}

#[tokio::test]
async fn preflights_by_exact_origin_before_any_credential_check() {
    let backend = start_echo().await;
    let proxy = proxy_with(backend.addr(), &jwt_config(""), Some(basic(APP))).await;

    let reply = preflight(proxy.addr, APP).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), APP);
    assert_eq!(
        reply.header("access-control-allow-methods"),
        proxy::DEFAULT_ALLOW_METHODS
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        proxy::DEFAULT_ALLOW_HEADERS
    );
    assert_eq!(reply.header("access-control-max-age"), "1728000");
    assert_eq!(reply.header("access-control-allow-credentials"), "");
    assert!(reply.body.is_empty());

    // Another origin: no CORS header, never a 2xx.
    let reply = preflight(proxy.addr, "https://evil.example").await;
    assert_eq!(reply.status, 403);
    assert_no_cors(&reply);
    assert_eq!(
        reply.json()["message"],
        "The CORS preflight request's origin is not allowed."
    );

    // OPTIONS without the preflight headers: ESPv2's 400.
    let reply =
        testkit::servers::http1(proxy.addr, "OPTIONS", UNARY, &[("origin", APP)], vec![]).await;
    assert_eq!(reply.status, 400);
    assert_no_cors(&reply);
}

#[tokio::test]
async fn preflights_by_regex_with_credentials_and_max_age() {
    let backend = start_echo().await;
    let cors = CorsSettings {
        allow_origin_regex: r"https://[a-z0-9-]+\.example\.com".to_owned(),
        allow_credentials: true,
        max_age: Duration::from_secs(600),
        expose_headers: "grpc-status,x-custom".to_owned(),
        ..CorsSettings::new(CorsPreset::CorsWithRegex)
    };
    let proxy = proxy_with(backend.addr(), &echo_config(), Some(cors)).await;
    for (origin, allowed) in [
        ("https://web-1.example.com", true),
        ("https://example.com", false),
        ("https://web.example.com.evil.test", false),
        ("http://web.example.com", false),
    ] {
        let reply = preflight(proxy.addr, origin).await;
        if allowed {
            assert_eq!(reply.status, 200, "{origin}");
            assert_eq!(reply.header("access-control-allow-origin"), origin);
            assert_eq!(reply.header("access-control-allow-credentials"), "true");
            assert_eq!(reply.header("access-control-max-age"), "600");
        } else {
            assert_eq!(reply.status, 403, "{origin}");
            assert_no_cors(&reply);
        }
    }
    // An actual call from an allowed origin: the exposed headers, the credentials flag.
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        UNARY,
        &[
            ("origin", "https://web-1.example.com"),
            ("content-type", "application/grpc-web"),
        ],
        vec![0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        "https://web-1.example.com"
    );
    assert_eq!(
        reply.header("access-control-expose-headers"),
        "grpc-status,x-custom"
    );
    assert_eq!(reply.header("access-control-allow-credentials"), "true");
    assert_eq!(reply.header("access-control-max-age"), "");
}

/// Rejections carry the CORS headers too, so the page can read why: UNAUTHENTICATED as a
/// gRPC-Web answer (status exposed by default), the 404 of an unknown path, the 415 of a call
/// that is not gRPC. An origin not allowed gets none of them.
#[tokio::test]
async fn rejections_carry_cors_headers_for_allowed_origins_only() {
    let backend = start_echo().await;
    let proxy = proxy_with(backend.addr(), &jwt_config(""), Some(basic(APP))).await;
    let web = [("origin", APP), ("content-type", "application/grpc-web")];
    let reply = testkit::servers::http1(proxy.addr, "POST", UNARY, &web, vec![0, 0, 0, 0, 0]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), "16", "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), APP);
    let exposed = reply
        .header("access-control-expose-headers")
        .to_ascii_lowercase();
    assert!(exposed.split(',').any(|h| h == "grpc-status"), "{exposed}");
    assert!(exposed.split(',').any(|h| h == "grpc-message"), "{exposed}");

    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        "/no.Such/Method",
        &[("origin", APP)],
        vec![],
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("access-control-allow-origin"), APP);

    let json = [("origin", APP), ("content-type", "application/json")];
    let reply = testkit::servers::http1(proxy.addr, "POST", UNARY, &json, b"{}".to_vec()).await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.header("access-control-allow-origin"), APP);

    let evil = [
        ("origin", "https://evil.example"),
        ("content-type", "application/grpc-web"),
    ];
    let reply =
        testkit::servers::http1(proxy.addr, "POST", UNARY, &evil, vec![0, 0, 0, 0, 0]).await;
    assert_eq!(reply.header("grpc-status"), "16");
    assert_no_cors(&reply);
}

/// Without `--cors-preset` nothing changes: a preflight is a call like any other (415 here).
#[tokio::test]
async fn without_cors_a_preflight_is_not_answered() {
    let backend = start_echo().await;
    let proxy = proxy_with(backend.addr(), &echo_config(), None).await;
    let reply = preflight(proxy.addr, APP).await;
    assert_eq!(reply.status, 415);
    assert_no_cors(&reply);
}

/// `endpoints[].allow_cors: true` (ESP): preflights go to the backend, unauthenticated, and its
/// answer comes back as it is; other calls are still checked.
#[tokio::test]
async fn allow_cors_passes_preflights_to_the_backend() {
    let seen = Arc::new(AtomicUsize::new(0));
    let backend = preflight_backend(seen.clone()).await;
    let config = jwt_config("endpoints:\n- name: echo.example.com\n  allow_cors: true\n");
    for cors in [None, Some(basic("https://other.example"))] {
        let proxy = proxy_with(backend, &config, cors).await;
        let before = seen.load(Ordering::SeqCst);
        let reply = preflight(proxy.addr, APP).await;
        assert_eq!(reply.status, 204, "{reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), "from-backend");
        assert_eq!(seen.load(Ordering::SeqCst), before + 1);
        // A "preflight" carrying a gRPC message: only the preflight reaches the backend, never
        // the message (a gRPC server ignoring the method would run the call unchecked).
        let reply = testkit::servers::http1(
            proxy.addr,
            "OPTIONS",
            UNARY,
            &[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("content-type", "application/grpc-web"),
            ],
            vec![0, 0, 0, 0, 0],
        )
        .await;
        assert_eq!(reply.status, 204, "{reply:?}");
        assert_eq!(seen.load(Ordering::SeqCst), before + 2);
        // An actual call still needs its token.
        let reply = testkit::servers::http1(
            proxy.addr,
            "POST",
            UNARY,
            &[("content-type", "application/grpc-web")],
            vec![0, 0, 0, 0, 0],
        )
        .await;
        assert_eq!(reply.header("grpc-status"), "16");
        assert_eq!(seen.load(Ordering::SeqCst), before + 2, "not forwarded");
    }
}

/// An h2c backend answering `OPTIONS` with 204 and its own CORS header, counting them.
async fn preflight_backend(seen: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let mut response =
                            http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                        // Its own CORS and Vary headers, on every answer.
                        response
                            .headers_mut()
                            .insert("vary", http::HeaderValue::from_static("accept-encoding"));
                        response.headers_mut().insert(
                            "access-control-allow-origin",
                            http::HeaderValue::from_static("backend-says-any"),
                        );
                        let preflight = request.method() == http::Method::OPTIONS
                            && request
                                .headers()
                                .contains_key("access-control-request-method");
                        let content_type = request.headers().contains_key("content-type");
                        let body = http_body_util::BodyExt::collect(request.into_body())
                            .await
                            .unwrap()
                            .to_bytes();
                        if preflight && (content_type || !body.is_empty()) {
                            // What a preflight never carries: flagged for the test to see.
                            *response.status_mut() = http::StatusCode::IM_A_TEAPOT;
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        if preflight {
                            seen.fetch_add(1, Ordering::SeqCst);
                            *response.status_mut() = http::StatusCode::NO_CONTENT;
                            response.headers_mut().insert(
                                "access-control-allow-origin",
                                http::HeaderValue::from_static("from-backend"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// The proxy's CORS headers replace a backend's own, and `Vary: Origin` joins the backend's Vary.
#[tokio::test]
async fn the_proxy_replaces_backend_cors_headers_and_keeps_its_vary() {
    let backend = preflight_backend(Arc::new(AtomicUsize::new(0))).await;
    let proxy = proxy_with(backend, &echo_config(), Some(basic(APP))).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post(UNARY)
        .header("host", "x")
        .header("origin", APP)
        .header("content-type", "application/grpc-web")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let headers = response.headers();
    let origins: Vec<_> = headers
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(origins, [APP], "{headers:?}");
    let vary: Vec<_> = headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["accept-encoding", "Origin"], "{headers:?}");
}
