//! gRPC-Web through the proxy, over real sockets, at the framing level (hyper clients): binary and
//! text bodies over HTTP/1.1 and HTTP/2, the trailer frame's bytes, trailers-only answers,
//! rejections as gRPC-Web, broken base64, and message sizes bounded as for gRPC calls. A client
//! we did not write (`@connectrpc/connect-node`) is driven in `grpc_web_connect.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::*;
use echo::pb::{EchoRequest, EchoResponse};
use http_body_util::BodyExt as _;
use prost::Message as _;

const UNARY: &str = "/esprit.echo.v1.Echo/Unary";
const SERVER_STREAM: &str = "/esprit.echo.v1.Echo/ServerStream";

/// A length-prefixed message: flag 0, big-endian length, bytes.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// The frames of a gRPC-Web body: (flag, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert!(body.len() >= 5 + len, "a truncated frame");
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

/// The messages and the trailer block of a gRPC-Web body; the trailer frame must be last.
fn split(body: &[u8]) -> (Vec<EchoResponse>, String) {
    let mut frames = frames(body);
    let (flag, trailers) = frames.pop().expect("a trailer frame");
    assert_eq!(flag, 0x80, "the last frame carries the trailers");
    let messages = frames
        .into_iter()
        .map(|(flag, payload)| {
            assert_eq!(flag, 0, "a message frame");
            EchoResponse::decode(payload.as_slice()).unwrap()
        })
        .collect();
    (messages, String::from_utf8(trailers).unwrap())
}

/// Text bodies as clients read them: 4-character groups, each message padded on its own.
fn decode_text(text: &[u8]) -> Vec<u8> {
    assert_eq!(text.len() % 4, 0, "whole groups");
    let mut out = Vec::new();
    let mut start = 0;
    for end in (4..=text.len()).step_by(4) {
        if text[end - 1] == b'=' || end == text.len() {
            out.extend(STANDARD.decode(&text[start..end]).unwrap());
            start = end;
        }
    }
    out
}

fn echo(payload: &'static [u8], count: u32) -> EchoRequest {
    EchoRequest {
        payload: Bytes::from_static(payload),
        count,
        ..Default::default()
    }
}

/// One HTTP/2 request with hyper: status, headers and body bytes (trailers must be none: the
/// gRPC-Web status travels in the body).
async fn h2_call(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Bytes) {
    let mut sender = h2c(addr).await;
    let mut request = http::Request::post(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(
            request
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    assert!(
        collected.trailers().is_none(),
        "no HTTP trailers in gRPC-Web"
    );
    (parts.status.as_u16(), parts.headers, collected.to_bytes())
}

#[tokio::test]
async fn binary_unary_over_http1_with_the_trailer_frame() {
    let (_backend, proxy) = echo_stack().await;
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        UNARY,
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("x-custom", "kept"),
        ],
        frame(&echo(b"hello", 0)),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/grpc-web+proto");
    assert_eq!(
        reply.header("content-length"),
        "",
        "chunked, not the backend's length"
    );
    let (messages, trailers) = split(&reply.raw);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload.as_ref(), b"hello");
    // The backend got a gRPC call: te, the metadata, and no gRPC-Web content type.
    let metadata = &messages[0].metadata;
    assert_eq!(metadata.get("x-custom").map(String::as_str), Some("kept"));
    assert_eq!(metadata.get("te").map(String::as_str), Some("trailers"));
    assert_eq!(
        metadata.get("grpc-accept-encoding").map(String::as_str),
        Some("identity")
    );
    // The trailer frame's bytes: lower-case `name: value` lines, CRLF each.
    assert!(trailers.starts_with("grpc-status: 0\r\n"), "{trailers:?}");
    assert!(trailers.ends_with("\r\n"), "{trailers:?}");
    for line in trailers.split_terminator("\r\n") {
        let (name, _) = line.split_once(": ").expect("name: value");
        assert_eq!(name, name.to_ascii_lowercase());
    }
}

#[tokio::test]
async fn binary_server_streaming_over_http2() {
    let (_backend, proxy) = echo_stack().await;
    let (status, headers, body) = h2_call(
        proxy.addr,
        SERVER_STREAM,
        &[("content-type", "application/grpc-web")],
        frame(&echo(b"s", 3)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/grpc-web+proto");
    let (messages, trailers) = split(&body);
    let indexes: Vec<u32> = messages.iter().map(|m| m.index).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(trailers.contains("grpc-status: 0\r\n"), "{trailers:?}");
}

/// Text both ways, the request sent in chunks that split base64 groups anywhere: decoded as it
/// streams, and the answer is base64 with each message complete on its own.
#[tokio::test]
async fn text_mode_streams_base64_both_ways_over_http1_chunks() {
    let (_backend, proxy) = echo_stack().await;
    let text = STANDARD.encode(frame(&echo(b"text mode", 2)));
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Chunks of 3 bytes: no chunk is a whole base64 group.
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = text
        .as_bytes()
        .chunks(3)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
    let request = http::Request::post(SERVER_STREAM)
        .header("host", "x")
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web-text+proto"
    );
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        text.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "base64 only"
    );
    let (messages, trailers) = split(&decode_text(&text));
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m.payload.as_ref() == b"text mode"));
    assert!(trailers.contains("grpc-status: 0\r\n"), "{trailers:?}");
}

/// The backend's trailers-only error answer stays trailers-only: HTTP 200, status in the headers,
/// empty body (Envoy's grpc_web filter passes such headers through).
#[tokio::test]
async fn a_trailers_only_backend_error_keeps_its_status_in_the_headers() {
    let (_backend, proxy) = echo_stack().await;
    let request = EchoRequest {
        fail_code: 5,
        fail_message: "no such thing".into(),
        ..Default::default()
    };
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        UNARY,
        &[("content-type", "application/grpc-web")],
        frame(&request),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/grpc-web+proto");
    assert_eq!(reply.header("grpc-status"), "5");
    assert_eq!(message(&reply), "no such thing");
    assert!(reply.raw.is_empty(), "{:?}", reply.raw);
}

/// The proxy's own answers to gRPC-Web callers: HTTP 200 and the status in the headers, as
/// Envoy's local replies through its grpc_web filter.
#[tokio::test]
async fn rejections_are_grpc_web_answers() {
    let (_backend, proxy) = echo_stack().await;
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        "/esprit.echo.v1.Echo/Nope",
        &[("content-type", "application/grpc-web")],
        frame(&echo(b"", 0)),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/grpc-web+proto");
    assert_eq!(reply.header("grpc-status"), "12");
    assert_eq!(
        message(&reply),
        "The current request is not defined by this API."
    );
    // A content type that is not one of the four: refused for its protocol, in plain HTTP.
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        UNARY,
        &[("content-type", "application/grpc-web+json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 415);
}

#[tokio::test]
async fn broken_base64_is_invalid_argument() {
    let (_backend, proxy) = echo_stack().await;
    for body in [&b"!!!!!!!!"[..], b"AAAAAAA"] {
        let reply = testkit::servers::http1(
            proxy.addr,
            "POST",
            UNARY,
            &[("content-type", "application/grpc-web-text")],
            body.to_vec(),
        )
        .await;
        assert_eq!(reply.status, 200);
        let status = match reply.header("grpc-status") {
            "" => split(&reply.raw).1,
            status => format!("grpc-status: {status}\r\n"),
        };
        assert!(
            status.contains("grpc-status: 3\r\n"),
            "{body:?}: {status:?} {reply:?}"
        );
        assert!(
            reply.header("grpc-message").is_empty()
                || message(&reply) == "Bad gRPC-web request, invalid base64 data.",
            "{reply:?}"
        );
    }
}

/// Message sizes are bounded as for gRPC calls: by the backend (the Bookstore takes 4 MiB), and
/// the proxy buffers nothing on the way. The same oversized CreateShelf over gRPC and gRPC-Web
/// gets the same refusal (tonic's OUT_OF_RANGE).
#[tokio::test]
async fn oversized_messages_are_refused_as_for_grpc() {
    let (_backend, proxy) = bookstore_stack().await;
    let big = bookstore::pb::CreateShelfRequest {
        shelf: Some(bookstore::pb::Shelf {
            id: 0,
            theme: "x".repeat(5 * 1024 * 1024),
        }),
    };
    let path = "/endpoints.examples.bookstore.Bookstore/CreateShelf";
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        path,
        &[("content-type", "application/grpc-web")],
        frame(&big),
    )
    .await;
    assert_eq!(reply.status, 200);
    let status = match reply.header("grpc-status") {
        "" => split_status(&reply.raw),
        status => status.to_owned(),
    };

    let channel = tonic::transport::Endpoint::from_shared(proxy.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = bookstore::pb::bookstore_client::BookstoreClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024);
    let err = client.create_shelf(big).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_eq!(status, (err.code() as i32).to_string(), "{err:?}");
}

/// `grpc-message` from the headers, percent-decoded (gRPC's encoding of the message).
fn message(reply: &testkit::HttpReply) -> String {
    let raw = reply.header("grpc-message").as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = std::str::from_utf8(&raw[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `grpc-status` from a body ending in a trailer frame.
fn split_status(body: &[u8]) -> String {
    let frames = frames(body);
    let (flag, trailers) = frames.last().expect("a trailer frame");
    assert_eq!(*flag, 0x80);
    let trailers = String::from_utf8(trailers.clone()).unwrap();
    trailers
        .split_terminator("\r\n")
        .find_map(|line| line.strip_prefix("grpc-status: "))
        .unwrap()
        .to_owned()
}

/// JWT checks apply to gRPC-Web calls as to gRPC ones, with the token in `Authorization`.
#[tokio::test]
async fn jwt_checks_apply_to_grpc_web_calls() {
    let (keys, token, _backend, proxy) = jwt_stack().await;
    let call = |headers: Vec<(&'static str, String)>| {
        let addr = proxy.addr;
        async move {
            let mut pairs: Vec<(&str, &str)> = vec![("content-type", "application/grpc-web")];
            pairs.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            testkit::servers::http1(addr, "POST", UNARY, &pairs, frame(&echo(b"jwt", 0))).await
        }
    };
    let reply = call(vec![]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), "16");
    assert_eq!(message(&reply), "Jwt is missing");
    assert_eq!(reply.header("www-authenticate"), "Bearer");

    let reply = call(vec![("authorization", "Bearer garbage".into())]).await;
    assert_eq!(reply.header("grpc-status"), "16");

    let reply = call(vec![("authorization", format!("Bearer {token}"))]).await;
    assert_eq!(reply.status, 200);
    let (messages, trailers) = split(&reply.raw);
    assert_eq!(messages[0].payload.as_ref(), b"jwt");
    assert!(
        messages[0].metadata.contains_key("x-endpoint-api-userinfo"),
        "the verified claims reach the backend"
    );
    assert!(trailers.contains("grpc-status: 0"), "{trailers}");
    drop(keys);
}

const ISSUER: &str = "web@consumer.example";
const SERVICE: &str = "echo.example.com";

/// Echo with a JWT on every method, its key server, a valid token.
async fn jwt_stack() -> (
    keysets::test_server::KeyServer,
    String,
    echo::RunningServer,
    RunningProxy,
) {
    use keysets::test_server::{KeyServer, Reply, jwks};
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let yaml = format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: esprit.echo.v1.Echo
authentication:
  providers:
  - id: consumer
    issuer: {ISSUER}
    jwks_uri: {jwks}
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#,
        jwks = keys.url("/jwks")
    );
    let backend = start_echo().await;
    let proxy = RunningProxy::start(&echo_service(&yaml), settings(backend.addr())).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": ISSUER, "sub": "1", "aud": SERVICE, "iat": now, "exp": now + 3600});
    let token = key
        .signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap();
    (keys, token, backend, proxy)
}

/// A gRPC-Web call whose request body never ends is still bounded by the stream idle clock and
/// the deadline, as gRPC calls are: `grpc-timeout` answers DEADLINE_EXCEEDED in the trailer frame.
#[tokio::test]
async fn grpc_timeout_applies_to_grpc_web_calls() {
    let (_backend, proxy) = echo_stack().await;
    let request = EchoRequest {
        sleep_ms: 5_000,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let reply = testkit::servers::http1(
        proxy.addr,
        "POST",
        UNARY,
        &[
            ("content-type", "application/grpc-web"),
            ("grpc-timeout", "200m"),
        ],
        frame(&request),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), "4", "{reply:?}");
}
