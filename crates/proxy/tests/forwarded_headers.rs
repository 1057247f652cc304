//! What the backend receives beyond the client's own metadata: no identity or hop-by-hop names
//! forged in request trailers, no client `Host`, and forwarding headers the proxy vouches for.
//! The backend here is a bare hyper HTTP/2 server that records each request, headers and
//! trailers (tonic does not expose request trailers); the client is hyper's, which sends what
//! it is told.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{RunningProxy, echo_config, listener, settings};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

const UNARY: &str = "/esprit.echo.v1.Echo/Unary";

/// What the backend saw of one request.
#[derive(Debug)]
struct Seen {
    uri: http::Uri,
    headers: HeaderMap,
    trailers: Option<HeaderMap>,
}

/// A backend that records every request and answers `grpc-status: 0` (trailers-only).
async fn recording_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let trailers = body
                        .collect()
                        .await
                        .ok()
                        .and_then(|c| c.trailers().cloned());
                    let _ = tx.send(Seen {
                        uri: parts.uri,
                        headers: parts.headers,
                        trailers,
                    });
                    let response = Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "0")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

/// One gRPC-shaped call to `addr` with `:authority` = `authority`, the given headers, an empty
/// message and the given trailers. Returns the HTTP status.
async fn call(
    addr: SocketAddr,
    authority: &str,
    headers: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> u16 {
    let mut sender = testkit::h2c(addr).await;
    let mut request = Request::post(format!("http://{authority}{UNARY}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut trailer_map = HeaderMap::new();
    for (name, value) in trailers {
        trailer_map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let mut frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[
        0, 0, 0, 0, 0,
    ])))];
    if !trailer_map.is_empty() {
        frames.push(Ok(Frame::trailers(trailer_map)));
    }
    let body = StreamBody::new(futures::stream::iter(frames));
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("the backend received nothing")
        .unwrap()
}

const FORGED_TRAILERS: &[(&str, &str)] = &[
    ("x-endpoint-api-userinfo", "eyJzdWIiOiJhZG1pbiJ9"),
    ("x_endpoint_api_userinfo", "eyJzdWIiOiJhZG1pbiJ9"),
    ("X-Endpoint-API-Consumer-Project", "victim-project"),
    ("x_endpoint_api_consumer_project", "victim-project"),
    ("x-forwarded-for", "6.6.6.6"),
    ("host", "attacker.example"),
    ("x-checksum", "kept"),
];

#[tokio::test]
async fn forged_identity_in_request_trailers_never_reaches_the_backend() {
    let (backend, mut seen) = recording_backend().await;
    // The client really sends these trailers: straight to the backend, they arrive.
    assert_eq!(call(backend, "backend", &[], FORGED_TRAILERS).await, 200);
    let direct = next(&mut seen).await.trailers.unwrap();
    assert_eq!(direct["x-endpoint-api-userinfo"], "eyJzdWIiOiJhZG1pbiJ9");
    assert_eq!(direct["x_endpoint_api_consumer_project"], "victim-project");

    let proxy = RunningProxy::start(&echo_config(), settings(backend)).await;
    assert_eq!(call(proxy.addr, "api", &[], FORGED_TRAILERS).await, 200);
    let trailers = next(&mut seen)
        .await
        .trailers
        .expect("ordinary trailers are forwarded");
    let names: Vec<&str> = trailers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, vec!["x-checksum"], "{trailers:?}");
    assert_eq!(trailers["x-checksum"], "kept");
}

#[tokio::test]
async fn a_client_host_header_is_not_forwarded_and_authority_is_the_backend() {
    let (backend, mut seen) = recording_backend().await;
    let host = [("host", "attacker.example")];
    // The client really sends `host`: straight to the backend, it arrives.
    call(backend, "backend", &host, &[]).await;
    assert_eq!(next(&mut seen).await.headers["host"], "attacker.example");

    let proxy = RunningProxy::start(&echo_config(), settings(backend)).await;
    assert_eq!(call(proxy.addr, "api.example.com", &host, &[]).await, 200);
    let got = next(&mut seen).await;
    assert!(got.headers.get("host").is_none(), "{:?}", got.headers);
    assert_eq!(
        got.uri.authority().unwrap().as_str(),
        backend.to_string(),
        ":authority must name the backend"
    );
    // The authority the client asked for, as the proxy's (unverified) report of it.
    assert_eq!(got.headers["x-forwarded-host"], "api.example.com");
    let all = format!("{:?}", got.headers);
    assert!(!all.contains("attacker.example"), "{all}");
}

#[tokio::test]
async fn forwarded_for_ends_with_the_peer_and_drops_client_entries_by_default() {
    let (backend, mut seen) = recording_backend().await;
    let proxy = RunningProxy::start(&echo_config(), settings(backend)).await;
    let forged = [
        ("x-forwarded-for", "6.6.6.6, 10.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "forged.example"),
    ];
    assert_eq!(call(proxy.addr, "api", &forged, &[]).await, 200);
    let got = next(&mut seen).await;
    let xff: Vec<_> = got.headers.get_all("x-forwarded-for").iter().collect();
    // Whichever entry a backend reads (first or last), it is the peer the proxy saw.
    assert_eq!(xff, vec!["127.0.0.1"]);
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    assert_eq!(got.headers["x-forwarded-host"], "api");
}

#[tokio::test]
async fn forwarded_for_keeps_the_trusted_hops_entries() {
    let (backend, mut seen) = recording_backend().await;
    let mut settings = settings(backend);
    settings.xff_num_trusted_hops = 1;
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    // A load balancer in front appended 203.0.113.5 (the address it saw) after the client's
    // own claim 6.6.6.6.
    let headers = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.5"),
        ("x-forwarded-proto", "https"),
    ];
    assert_eq!(call(proxy.addr, "api", &headers, &[]).await, 200);
    let got = next(&mut seen).await;
    let xff: Vec<_> = got.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, vec!["203.0.113.5, 127.0.0.1"]);
    assert_eq!(got.headers["x-forwarded-proto"], "https");
}
