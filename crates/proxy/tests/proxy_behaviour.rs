//! What the proxy answers itself: unknown methods, deadlines, a backend that is down, drain on
//! shutdown, health checks, TLS on both sides, and headers it vouches for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use echo::pb::EchoRequest;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

#[tokio::test]
async fn a_path_outside_the_api_is_answered_by_the_proxy() {
    let (_backend, proxy) = echo_stack().await;
    // A real gRPC client of another service (the Bookstore) calling the echo API's proxy.
    let channel = tonic::transport::Endpoint::from_shared(proxy.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bookstore = bookstore::pb::bookstore_client::BookstoreClient::new(channel);
    let status = bookstore.list_shelves(()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "The current request is not defined by this API."
    );

    // HTTP/1.1 callers get a 404 and ESP's JSON body.
    let (status, head, body) = http1(
        proxy.addr,
        "GET /v1/shelves HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], 404);
    assert_eq!(
        body["message"],
        "The current request is not defined by this API."
    );
}

#[tokio::test]
async fn a_method_called_without_grpc_is_refused_not_forwarded() {
    let (_backend, proxy) = echo_stack().await;
    let (status, _, body) = http1(
        proxy.addr,
        "POST /esprit.echo.v1.Echo/Unary HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 415);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], 415);
}

#[tokio::test]
async fn healthz_is_served_over_http1() {
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.healthz = Some("/healthz".into());
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let (status, _, body) = http1(
        proxy.addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "{\"status\":\"SERVING\"}");
}

#[tokio::test]
async fn forged_vouched_headers_never_reach_the_backend() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let mut request = Request::new(EchoRequest::default());
    let md = request.metadata_mut();
    md.insert(
        "x-endpoint-api-userinfo",
        MetadataValue::from_static("forged"),
    );
    md.insert(
        "x_endpoint_api_userinfo",
        MetadataValue::from_static("forged"),
    );
    md.insert(
        "x-endpoint-api-consumer-project",
        MetadataValue::from_static("forged"),
    );
    md.insert("x-innocent", MetadataValue::from_static("kept"));
    let reply = client.unary(request).await.unwrap().into_inner();
    let seen: Vec<&String> = reply.metadata.keys().collect();
    assert!(
        !seen
            .iter()
            .any(|k| k.replace('_', "-").starts_with("x-endpoint-api")),
        "{seen:?}"
    );
    assert_eq!(
        reply.metadata.get("x-innocent").map(String::as_str),
        Some("kept")
    );
}

/// A backend that accepts HTTP/2 calls and never answers, or answers headers and then stalls:
/// only the proxy can enforce the caller's deadline.
async fn stalling_backend(send_headers: bool) -> std::net::SocketAddr {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    if !send_headers {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    let (_tx, rx) =
                        tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                    // Keep the sender alive so the body never ends.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(_tx);
                    });
                    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_proxy_enforces_grpc_timeout_before_and_after_response_headers() {
    for send_headers in [false, true] {
        let backend = stalling_backend(send_headers).await;
        let proxy = RunningProxy::start(&echo_config(), settings(backend)).await;
        let started = Instant::now();
        let response = raw_grpc_call(
            proxy.addr,
            "/esprit.echo.v1.Echo/Unary",
            &[("grpc-timeout", "300m")],
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.grpc_status(),
            Some(Code::DeadlineExceeded as i32),
            "headers sent: {send_headers}"
        );
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}

#[tokio::test]
async fn backend_down_is_unavailable_promptly_then_recovers_without_restart() {
    // A port reserved but not listening: connections are refused.
    let backend_port = dead_addr();
    let proxy = RunningProxy::start(&echo_config(), settings(backend_port.addr())).await;
    let mut client = echo_client(proxy.url()).await;

    // A bound on each call, so that a call that hangs fails here, not at the test timeout.
    let bounded = |request: EchoRequest| {
        let mut request = tonic::Request::new(request);
        request.set_timeout(Duration::from_secs(10));
        request
    };
    let started = Instant::now();
    let status = client
        .unary(bounded(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("connection failure"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The backend comes up on the same address; the same proxy and client now succeed.
    let _backend = echo::RunningServer::start(backend_port.listen()).unwrap();
    let reply = client
        .unary(bounded(EchoRequest {
            payload: Bytes::from_static(b"back"),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&reply.payload[..], b"back");
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_call_then_stops_accepting() {
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.healthz = Some("/healthz".into());
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let addr = proxy.addr;
    let mut client = echo_client(proxy.url()).await;
    let in_flight = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                sleep_ms: 700,
                payload: Bytes::from_static(b"x"),
                ..Default::default()
            })
            .await
    });
    // Real time: the call must be in flight at the backend over real sockets before the drain
    // starts (the echo backend gives no arrival signal); drain runs on tokio's timers.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let drained = proxy.shutdown();
    let reply = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(&reply.payload[..], b"x");
    assert!(
        drained.await.unwrap(),
        "drain should complete before the timeout"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener should be closed"
    );
}

#[tokio::test]
async fn drain_gives_up_after_the_timeout() {
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.drain_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let mut client = echo_client(proxy.url()).await;
    let _in_flight = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                sleep_ms: 10_000,
                ..Default::default()
            })
            .await
    });
    // Real time, as above: the call must have reached the backend before the drain starts.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    assert!(
        !proxy.shutdown().await.unwrap(),
        "drain must report the call left behind"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn tls_listener_and_grpcs_backend() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    // Front proxy: TLS listener, h2c echo backend.
    let backend = start_echo().await;
    let mut front = settings(backend.addr());
    front.tls = Some(proxy::TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    let front = RunningProxy::start(&echo_config(), front).await;

    // A tonic client over TLS straight to the front proxy.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", front.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = echo::pb::echo_client::EchoClient::new(channel);
    let reply = client
        .unary(EchoRequest {
            payload: Bytes::from_static(b"tls"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&reply.payload[..], b"tls");

    // Second proxy: h2c listener, grpcs:// backend = the front proxy, trusted via --backend-ca.
    let mut chained = proxy::ProxySettings::new(
        "127.0.0.1:0".parse().unwrap(),
        format!("grpcs://localhost:{}", front.addr.port())
            .parse()
            .unwrap(),
    );
    chained.backend_ca = Some(cert_path);
    let chained = RunningProxy::start(&echo_config(), chained).await;
    let mut client = echo_client(chained.url()).await;
    let reply = client
        .unary(EchoRequest {
            payload: Bytes::from_static(b"chained"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&reply.payload[..], b"chained");

    // Without the CA the backend's certificate is not trusted: UNAVAILABLE, not a hang.
    let untrusted = proxy::ProxySettings::new(
        "127.0.0.1:0".parse().unwrap(),
        format!("grpcs://localhost:{}", front.addr.port())
            .parse()
            .unwrap(),
    );
    let untrusted = RunningProxy::start(&echo_config(), untrusted).await;
    let mut client = echo_client(untrusted.url()).await;
    let status = client.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn response_body_of_a_stalled_stream_is_not_buffered() {
    // The first streamed message arrives while the backend is still sending the rest.
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let request = EchoRequest {
        count: 3,
        sleep_ms: 400,
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    stream.message().await.unwrap().unwrap();
    let first = started.elapsed();
    while stream.message().await.unwrap().is_some() {}
    assert!(
        first < Duration::from_millis(1000),
        "first message after {first:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1100));
}
