//! API keys when the key server is down, refuses the proxy, answers nonsense, is saturated, or
//! is reached over TLS or off loopback: what fails closed, what fail-open lets through, and
//! what it never does. The rules themselves: `api_keys.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::api_keys::*;
use common::*;
use echo::pb::EchoRequest;
use tonic::{Code, Request};

const OVERLOADED: &str = "API key could not be checked: too many checks are in progress.";

#[tokio::test]
async fn key_server_down_fails_closed_but_cached_keys_keep_working() {
    let (mut keys, _backend, proxy) = stack(|_| {}).await;
    let (cached, _) = keys.create("p-project");
    let (uncached, _) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &cached)]).await.unwrap();
    keys.stop();
    // Real time: the key server's listener closes on its own task, over real sockets.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = unary(proxy.url(), &[("x-api-key", &uncached)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let reply = unary(proxy.url(), &[("x-api-key", &cached)]).await.unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "p-project"
    );
}

#[tokio::test]
async fn key_server_down_with_fail_open_lets_calls_through() {
    let (mut keys, _backend, proxy) = stack(|s| {
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    let (key, _) = keys.create("p-project");
    keys.stop();
    // Real time, as above.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
    // Nothing was checked, so nothing is vouched for.
    assert!(
        !reply
            .metadata
            .contains_key("x-endpoint-api-consumer-project")
    );
    // A missing key is still refused: fail open concerns the key server, not the rule.
    let status = unary(proxy.url(), &[]).await.unwrap_err();
    assert_eq!(status.message(), MISSING);
}

/// Issue 9, item 1: a fail-open proxy in front of the real key server refuses a 9 000-byte junk
/// key (the key server would answer 413, which used to count as "unreachable" and let it in).
#[tokio::test]
async fn fail_open_refuses_an_overlong_key() {
    let (keys, _backend, proxy) = stack(|s| {
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    let junk = "k".repeat(9_000);
    let status = unary(proxy.url(), &[("x-api-key", &junk)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);
    // In the query too.
    let path = format!("/esprit.echo.v1.Echo/Unary?key={junk}");
    assert_eq!(
        raw_grpc_call(proxy.addr, &path, &[]).await.grpc_status(),
        Some(3)
    );
    // A real key still works through the same proxy.
    let (key, _) = keys.create("p-project");
    unary(proxy.url(), &[("x-api-key", &key)]).await.unwrap();
}

/// Issue 9, item 1: fail-open opens only for an unreachable key server (5xx, connect failure);
/// a 4xx, or an answer without a verdict, is an invalid key. Issue 12: but 401/403 are about
/// the proxy's own credentials: refused as unavailable (below), never let through.
#[tokio::test]
async fn fail_open_opens_only_when_the_key_server_is_unreachable() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = stack_fail_open().await;
    // (reply, allowed). Each case uses its own key: invalid answers are cached.
    let table = [
        (Reply::status(400), false),
        (Reply::status(413), false),
        (Reply::status(429), false),
        (Reply::json("garbage"), false),
        (Reply::json("{}"), false),
        (Reply::json(r#"{"valid":true}"#), false),
        (
            Reply::json(r#"{"valid":"yes","consumer_project":"p"}"#),
            false,
        ),
        (Reply::status(500), true),
        (Reply::status(503), true),
        (
            Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
            true,
        ),
    ];
    for (i, (reply, allowed)) in table.into_iter().enumerate() {
        let desc = format!("{reply:?}");
        checks.set(CHECK_PATH, reply);
        let key = format!("AIzaCase{i}");
        match unary(proxy.url(), &[("x-api-key", &key)]).await {
            Ok(_) => assert!(allowed, "{desc}: let through"),
            Err(status) => {
                assert!(!allowed, "{desc}: refused with {status:?}");
                assert_eq!(status.code(), Code::InvalidArgument, "{desc}");
                assert_eq!(status.message(), INVALID, "{desc}");
            }
        }
    }
    // 401/403: the key server refuses the proxy itself. Fails closed even with fail-open, and
    // is not cached as an answer about the key: the next call asks again.
    for status in [401, 403] {
        checks.set(CHECK_PATH, Reply::status(status));
        let before = checks.hits(CHECK_PATH);
        let key = format!("AIzaRefused{status}");
        for _ in 0..2 {
            let refused = unary(proxy.url(), &[("x-api-key", &key)])
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::Unavailable, "{status}");
            assert_eq!(refused.message(), UNAVAILABLE, "{status}");
        }
        assert_eq!(checks.hits(CHECK_PATH), before + 2, "{status}");
    }
    // A stopped key server: unreachable, so fail-open lets the call through.
    checks.stop().await;
    unary(proxy.url(), &[("x-api-key", "AIzaAfterStop")])
        .await
        .unwrap();
}

async fn stack_fail_open() -> (
    keysets::test_server::KeyServer,
    echo::RunningServer,
    RunningProxy,
) {
    scripted_stack(|s| s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen).await
}

/// Issue 9, item 6: at most `max_pending_checks` key-server checks are outstanding; calls past
/// the cap are refused with UNAVAILABLE — even with fail-open, saturation is never a way in.
#[tokio::test]
async fn outstanding_key_checks_are_capped() {
    use keysets::test_server::Reply;
    let (checks, _backend, proxy) = scripted_stack(|s| {
        s.api_keys.max_pending_checks = 3;
        s.api_keys.check_timeout = Duration::from_secs(20);
        s.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    })
    .await;
    checks.set(
        CHECK_PATH,
        // Long enough that all twelve calls arrive while the first checks are outstanding, even
        // on a loaded machine.
        Reply::slow(
            Duration::from_secs(3),
            Reply::json(r#"{"valid":true,"consumer_project":"p"}"#),
        ),
    );
    let client = echo_client(proxy.url()).await;
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = Request::new(EchoRequest::default());
                request
                    .metadata_mut()
                    .insert("x-api-key", format!("AIzaDistinct{i}").parse().unwrap());
                client.unary(request).await
            })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(reply) => {
                allowed += 1;
                assert_eq!(
                    reply
                        .into_inner()
                        .metadata
                        .get("x-endpoint-api-consumer-project")
                        .unwrap(),
                    "p"
                );
            }
            Err(status) => {
                refused += 1;
                assert_eq!(status.code(), Code::Unavailable);
                assert_eq!(status.message(), OVERLOADED);
            }
        }
    }
    assert!(
        checks.hits(CHECK_PATH) <= 3,
        "{} checks",
        checks.hits(CHECK_PATH)
    );
    assert!((1..=3).contains(&allowed), "{allowed} allowed");
    assert_eq!(allowed + refused, 12);
}

#[tokio::test]
async fn key_server_over_tls_with_a_private_ca() {
    let (keys, ca) = KeyService::start_tls().await;
    assert!(keys.url.starts_with("https://127.0.0.1:"), "{}", keys.url);
    let (valid, _) = keys.create("tls-project");
    let backend = start_echo().await;
    let mut trusting = settings(backend.addr());
    trusting.api_keys.service_control_urls = vec![keys.url.clone()];
    trusting.api_keys.service_control_ca = Some(ca);
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), trusting).await;

    let reply = unary(proxy.url(), &[("x-api-key", &valid)]).await.unwrap();
    assert_eq!(
        reply
            .metadata
            .get("x-endpoint-api-consumer-project")
            .unwrap(),
        "tls-project"
    );
    let status = unary(
        proxy.url(),
        &[("x-api-key", "AIzaSyNotARealKeyNotARealKeyNotARealK")],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), INVALID);

    // Without the CA the server's certificate is not trusted: the check fails, closed, and the
    // echo backend (which would answer OK) is not reached.
    let mut untrusting = settings(backend.addr());
    untrusting.api_keys.service_control_urls = vec![keys.url.clone()];
    let proxy = RunningProxy::start(&config("http://127.0.0.1:9/jwks"), untrusting).await;
    let status = unary(proxy.url(), &[("x-api-key", &valid)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), UNAVAILABLE);
}

#[tokio::test]
async fn plain_http_key_server_off_loopback_is_refused_unless_allowed() {
    let backend = start_echo().await;
    let mut refused = settings(backend.addr());
    // 192.0.2.1 (TEST-NET-1): never contacted, the URL is refused before any check.
    refused.api_keys.service_control_urls = vec!["http://192.0.2.1:8085".into()];
    let err = match proxy::Proxy::bind(&config("http://127.0.0.1:9/jwks"), refused).await {
        Ok(_) => panic!("a plain http key server off loopback was accepted"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("--service-control-allow-insecure-http"),
        "{err}"
    );

    let mut allowed = settings(backend.addr());
    allowed.api_keys.service_control_urls = vec!["http://192.0.2.1:8085".into()];
    allowed.api_keys.allow_insecure_http = true;
    assert!(
        proxy::Proxy::bind(&config("http://127.0.0.1:9/jwks"), allowed)
            .await
            .is_ok()
    );
}
