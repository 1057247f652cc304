//! The echo server in-process on `127.0.0.1:0`, called with tonic's client.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use bytes::Bytes;
use echo::pb::echo_client::EchoClient;
use echo::pb::{EchoRequest, EchoResponse};
use echo::{MAX_MESSAGE_SIZE, RunningServer, TRAILER_BIN_VALUE};
use testkit::start_echo as start;
use tonic::metadata::{BinaryMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn client(server: &RunningServer) -> EchoClient<Channel> {
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

const BIN: &[u8] = &[0x00, 0x01, 0xfe, 0xff, b'\n'];

fn with_metadata<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let md = request.metadata_mut();
    md.insert("x-test", "hello".parse().unwrap());
    md.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
    md.insert_bin("trace-bin", BinaryMetadataValue::from_bytes(BIN));
    request
}

fn payload(text: &str) -> Bytes {
    Bytes::from(text.to_owned())
}

fn assert_echo_headers(headers: &MetadataMap) {
    assert_eq!(headers.get("echo-x-test").unwrap(), "hello");
    assert_eq!(
        headers.get("echo-authorization").unwrap(),
        "Bearer abc.def.ghi"
    );
    let bin = headers.get_bin("echo-trace-bin").unwrap();
    assert_eq!(bin.to_bytes().unwrap().as_ref(), BIN);
}

fn assert_echo_trailers(trailers: &MetadataMap) {
    assert_eq!(trailers.get("echo-trailer").unwrap(), "done");
    let bin = trailers.get_bin("echo-trailer-bin").unwrap();
    assert_eq!(bin.to_bytes().unwrap().as_ref(), TRAILER_BIN_VALUE);
}

fn assert_request_metadata(response: &EchoResponse) {
    assert_eq!(response.metadata.get("x-test").unwrap(), "hello");
    assert_eq!(
        response.metadata.get("authorization").unwrap(),
        "Bearer abc.def.ghi"
    );
    // Binary entries are not put in the string map.
    assert!(!response.metadata.contains_key("trace-bin"));
}

#[tokio::test]
async fn unary_echoes_payload_metadata_headers_and_trailers() {
    let server = start().await;
    let mut c = client(&server).await;
    let response = c
        .unary(with_metadata(EchoRequest {
            payload: payload("ping"),
            ..Default::default()
        }))
        .await
        .unwrap();
    // tonic merges a unary call's trailers into its metadata.
    assert_echo_headers(response.metadata());
    assert_echo_trailers(response.metadata());
    let message = response.into_inner();
    assert_eq!(message.payload, payload("ping"));
    assert_eq!(message.index, 0);
    assert_request_metadata(&message);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn server_stream_sends_count_messages_then_trailers() {
    let server = start().await;
    let mut c = client(&server).await;
    let response = c
        .server_stream(with_metadata(EchoRequest {
            payload: payload("tick"),
            count: 5,
            ..Default::default()
        }))
        .await
        .unwrap();
    // Headers arrive before the messages and are not the trailers.
    assert_echo_headers(response.metadata());
    assert!(response.metadata().get("echo-trailer").is_none());
    let mut stream = response.into_inner();
    let mut got = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        got.push(message);
    }
    assert_eq!(got.len(), 5);
    for (i, message) in got.iter().enumerate() {
        assert_eq!(message.index as usize, i);
        assert_eq!(message.payload, payload("tick"));
    }
    assert_request_metadata(&got[0]);
    assert!(got[1].metadata.is_empty());
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_echo_trailers(&trailers);
    assert!(trailers.get("echo-x-test").is_none());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn client_stream_concatenates_and_counts() {
    let server = start().await;
    let mut c = client(&server).await;
    let requests = ["a", "bc", "def"].map(|p| EchoRequest {
        payload: payload(p),
        ..Default::default()
    });
    let response = c
        .client_stream(with_metadata(tokio_stream::iter(requests)))
        .await
        .unwrap();
    assert_echo_headers(response.metadata());
    assert_echo_trailers(response.metadata());
    let message = response.into_inner();
    assert_eq!(message.payload, payload("abcdef"));
    assert_eq!(message.index, 3);
    assert_request_metadata(&message);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bidi_echoes_each_message_as_it_arrives() {
    let server = start().await;
    let mut c = client(&server).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let response = c
        .bidi(with_metadata(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
        .await
        .unwrap();
    assert_echo_headers(response.metadata());
    let mut stream = response.into_inner();
    // Lock-step: each reply arrives before the next request is sent.
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        tx.send(EchoRequest {
            payload: payload(text),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = stream.message().await.unwrap().unwrap();
        assert_eq!(reply.payload, payload(text));
        assert_eq!(reply.index as usize, i);
        if i == 0 {
            assert_request_metadata(&reply);
        } else {
            assert!(reply.metadata.is_empty());
        }
    }
    drop(tx);
    assert!(stream.message().await.unwrap().is_none());
    assert_echo_trailers(&stream.trailers().await.unwrap().unwrap());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn messages_of_32_mib_round_trip() {
    let server = start().await;
    let mut c = client(&server).await;
    let big: Bytes = (0..32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = c
        .unary(EchoRequest {
            payload: big.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload.len(), big.len());
    assert!(reply.payload == big);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sleep_delays_the_reply_and_meets_deadlines() {
    let server = start().await;
    let mut c = client(&server).await;
    let started = Instant::now();
    c.unary(EchoRequest {
        sleep_ms: 300,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A deadline shorter than the sleep: the server's own deadline handling (from
    // `grpc-timeout`) ends the call, whichever side notices first.
    let mut request = Request::new(EchoRequest {
        sleep_ms: 5_000,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = c.unary(request).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn fail_code_returns_that_status_and_message() {
    let server = start().await;
    let mut c = client(&server).await;
    let cases = [
        (16, "Jwt is missing", Code::Unauthenticated),
        (
            7,
            "Audiences in Jwt are not allowed",
            Code::PermissionDenied,
        ),
        (5, "no such thing: ünïcödé ✓ 日本語", Code::NotFound),
        (14, "line one\nline two %", Code::Unavailable),
    ];
    for (fail_code, message, code) in cases {
        let err = c
            .unary(EchoRequest {
                fail_code,
                fail_message: message.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{message}");
        assert_eq!(err.message(), message);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn server_stream_can_fail_after_sending_messages() {
    let server = start().await;
    let mut c = client(&server).await;
    let mut stream = c
        .server_stream(EchoRequest {
            payload: payload("x"),
            count: 2,
            fail_code: 8,
            fail_message: "quota gone".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().index, 0);
    assert_eq!(stream.message().await.unwrap().unwrap().index, 1);
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "quota gone");

    // count 0 with a failure: the call fails before any message.
    let err = c
        .server_stream(EchoRequest {
            fail_code: 9,
            fail_message: "nope".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    use tokio::io::AsyncBufReadExt as _;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().unwrap();
    assert_ne!(addr.port(), 0);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = EchoClient::new(channel)
        .unary(EchoRequest {
            payload: payload("hi"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload, payload("hi"));

    // SIGTERM stops it cleanly.
    let status = testkit::cli::sigterm_and_wait(&mut child).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn plain_replies_reflect_nothing() {
    let listener = testkit::listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo::serve_with(
        listener,
        std::future::pending(),
        echo::Reflect::Nothing,
    ));
    let mut client = EchoClient::connect(format!("http://{addr}")).await.unwrap();
    let mut request = tonic::Request::new(EchoRequest {
        payload: bytes::Bytes::from_static(b"p"),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-big", "v".repeat(500).parse().unwrap());
    let response = client.unary(request).await.unwrap();
    assert!(response.metadata().get("echo-x-big").is_none());
    assert!(response.metadata().get("echo-trailer").is_none());
    let reply = response.into_inner();
    assert_eq!(&reply.payload[..], b"p");
    assert!(reply.metadata.is_empty(), "{:?}", reply.metadata);
}
