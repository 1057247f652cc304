//! API keys end to end: the proxy, esprit's real key server (`iam::serve` on a temporary
//! store), the echo backend showing what it received, and real clients. This file: each rule
//! combination, the cache of answers, and calls that cause no check. The key server down,
//! refusing, saturated or reached over TLS: `api_keys_key_server.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::api_keys::*;
use common::*;
use echo::pb::EchoRequest;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

#[tokio::test]
async fn every_rule_combination_with_code_and_message() {
    let (keys, _backend, proxy) = stack(|_| {}).await;
    let (valid, _) = keys.create("consumer-project");
    let (revoked, revoked_id) = keys.create("consumer-project");
    keys.revoke(&revoked_id);
    let mut client = echo_client(proxy.url()).await;

    // Unary: default locations. (description, metadata, code, message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Code, &'a str);
    let table: Vec<Case> = vec![
        ("no key", vec![], Code::Unauthenticated, MISSING),
        (
            "valid key in x-api-key",
            vec![("x-api-key", valid.as_str())],
            Code::Ok,
            "",
        ),
        (
            "unknown key",
            vec![("x-api-key", "AIzaSyNotARealKeyNotARealKeyNotARealK")],
            Code::InvalidArgument,
            INVALID,
        ),
        (
            "revoked key",
            vec![("x-api-key", revoked.as_str())],
            Code::InvalidArgument,
            INVALID,
        ),
        (
            "key in a header the method does not read",
            vec![("x-my-key", valid.as_str())],
            Code::Unauthenticated,
            MISSING,
        ),
    ];
    for (desc, metadata, code, message) in table {
        match unary(proxy.url(), &metadata).await {
            Ok(reply) => {
                assert_eq!(code, Code::Ok, "{desc}");
                assert_eq!(
                    reply
                        .metadata
                        .get("x-endpoint-api-consumer-project")
                        .map(String::as_str),
                    Some("consumer-project"),
                    "{desc}"
                );
            }
            Err(status) => {
                assert_eq!(status.code(), code, "{desc}");
                assert_eq!(status.message(), message, "{desc}");
            }
        }
    }

    // Query parameters `key` and `api_key` (default locations), over raw HTTP/2.
    for param in ["key", "api_key"] {
        let path = format!("/esprit.echo.v1.Echo/Unary?{param}={valid}");
        assert_eq!(
            raw_grpc_call(proxy.addr, &path, &[]).await.grpc_status(),
            Some(0),
            "{param}"
        );
    }

    // ServerStream allows unregistered calls: no key needed, and a forged consumer project
    // never reaches the backend.
    let mut request = Request::new(EchoRequest {
        count: 1,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-endpoint-api-consumer-project",
        MetadataValue::from_static("forged"),
    );
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        !first
            .metadata
            .contains_key("x-endpoint-api-consumer-project"),
        "{:?}",
        first.metadata
    );

    // A forged consumer project next to a valid key is replaced by the real one.
    let reply = unary(
        proxy.url(),
        &[
            ("x-api-key", &valid),
            ("x-endpoint-api-consumer-project", "forged"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "consumer-project"
    );

    // ClientStream reads `x-my-key` (system_parameters) and nothing else.
    for (header, want) in [("x-my-key", Code::Ok), ("x-api-key", Code::Unauthenticated)] {
        let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
        request
            .metadata_mut()
            .insert(header, valid.parse().unwrap());
        let got = client
            .client_stream(request)
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(got, want, "{header}");
    }

    // Bidi: JWT (allowed without credential) and API key. A bad token is refused first; no
    // token and no key fails on the key; no token and a valid key passes.
    let bidi = |metadata: Vec<(&'static str, String)>| {
        let mut client = client.clone();
        async move {
            let mut request = Request::new(tokio_stream::iter(vec![EchoRequest::default()]));
            for (k, v) in metadata {
                request.metadata_mut().insert(k, v.parse().unwrap());
            }
            match client.bidi(request).await {
                Ok(response) => response.into_inner().message().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
    };
    let status = bidi(vec![
        ("authorization", "Bearer junk".into()),
        ("x-api-key", valid.clone()),
    ])
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with("Jwt is not in the form"),
        "{}",
        status.message()
    );
    let status = bidi(vec![]).await.unwrap_err();
    assert_eq!(status.message(), MISSING);
    bidi(vec![("x-api-key", valid.clone())]).await.unwrap();
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_duration() {
    // The cache's expiry is read from the injected clock: time moves when the test says so.
    let clock = clock::ManualClock::starting_now();
    let cache_valid = Duration::from_secs(60);
    let (keys, _backend, proxy) = stack(|s| {
        s.api_keys.cache_valid = cache_valid;
        s.clock = clock.shared();
    })
    .await;
    let (key, id) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    keys.revoke(&id);
    // Still cached as valid: no round trip, still accepted, up to the last millisecond.
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    clock.advance(cache_valid - Duration::from_millis(1));
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    clock.advance(Duration::from_millis(1));
    let status = unary(proxy.url(), &[("x-api-key", &key)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);
}

#[tokio::test]
async fn many_calls_with_one_uncached_key_cause_one_check() {
    use keysets::test_server::{KeyServer, Reply};
    // A key server that answers slowly and counts: every call below overlaps the first check.
    let checks = KeyServer::start().await.unwrap();
    let path = "/v1/services/echo.example.com:check";
    let answer = r#"{"valid":true,"key_id":"k","consumer_project":"counted"}"#;
    checks.set(
        path,
        Reply::slow(Duration::from_millis(300), Reply::json(answer)),
    );
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.api_keys.service_control_urls = vec![format!("http://{}", checks.addr())];
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), settings).await;
    let client = echo_client(proxy.url()).await;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = Request::new(EchoRequest::default());
                request.metadata_mut().insert(
                    "x-api-key",
                    MetadataValue::from_static("AIzaSameKeyForEveryone"),
                );
                client.unary(request).await
            })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap().unwrap().into_inner();
        assert_eq!(
            reply
                .metadata
                .get("x-endpoint-api-consumer-project")
                .unwrap(),
            "counted"
        );
    }
    assert_eq!(
        checks.hits(path),
        1,
        "concurrent calls with one key must share one check"
    );
}

/// Issue 9, item 5: calls that can never be served (HTTP/1.1, or not gRPC) are answered 415
/// before any key is checked: the key server sees no request, whatever the key.
#[tokio::test]
async fn calls_that_cannot_be_served_cause_no_key_checks() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = scripted_stack(|_| {}).await;
    checks.set(
        CHECK_PATH,
        Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
    );
    for i in 0..5 {
        let request = format!(
            "POST /esprit.echo.v1.Echo/Unary?key=AIzaQuery{i} HTTP/1.1\r\nhost: x\r\nx-api-key: AIzaHeader{i}\r\n\
             content-type: application/grpc\r\ncontent-length: 5\r\nconnection: close\r\n\r\n\0\0\0\0\0"
        );
        let (status, _, _) = http1(proxy.addr, &request).await;
        assert_eq!(status, 415);
    }
    // HTTP/2 with a content type other than gRPC.
    let response = raw_h2_post(
        proxy.addr,
        "/esprit.echo.v1.Echo/Unary",
        "application/json",
        "AIzaJson",
    )
    .await;
    assert_eq!(response, 415);
    assert_eq!(
        checks.hits(CHECK_PATH),
        0,
        "a key check for a call that cannot be served"
    );
    // A gRPC call with a key is checked (the counter works).
    unary(proxy.url(), &[("x-api-key", "AIzaGrpc")])
        .await
        .unwrap();
    assert_eq!(checks.hits(CHECK_PATH), 1);
}

/// An HTTP/2 POST with `content_type` and an `x-api-key`; returns the HTTP status.
async fn raw_h2_post(addr: std::net::SocketAddr, path: &str, content_type: &str, key: &str) -> u16 {
    let mut sender = h2c(addr).await;
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("x-api-key", key)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}
