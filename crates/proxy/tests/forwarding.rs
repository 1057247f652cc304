//! The proxy forwards gRPC faithfully: the four call kinds, metadata both ways (ASCII and
//! `-bin`), trailers, status codes and messages, large messages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use echo::pb::{EchoRequest, EchoResponse};
use tokio_stream::StreamExt;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::{Code, Request};

fn echo_request(payload: &[u8]) -> EchoRequest {
    EchoRequest {
        payload: payload.to_vec().into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn unary_round_trips_metadata_and_trailers() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let mut request = Request::new(echo_request(b"hello"));
    request
        .metadata_mut()
        .insert("x-custom", MetadataValue::from_static("value-1"));
    request.metadata_mut().insert_bin(
        "x-blob-bin",
        BinaryMetadataValue::from_bytes(&[0, 159, 255, 10]),
    );
    let response = client.unary(request).await.unwrap();
    let (metadata, message, _) = response.into_parts();

    assert_eq!(&message.payload[..], b"hello");
    // What the backend received.
    assert_eq!(
        message.metadata.get("x-custom").map(String::as_str),
        Some("value-1")
    );
    // Response headers the backend set, echoed back through the proxy, binary intact.
    assert_eq!(metadata.get("echo-x-custom").unwrap(), "value-1");
    assert_eq!(
        metadata
            .get_bin("echo-x-blob-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 159, 255, 10]
    );
    // Trailers (tonic merges them into the unary response's metadata).
    assert_eq!(metadata.get("echo-trailer").unwrap(), "done");
    assert_eq!(
        metadata
            .get_bin("echo-trailer-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        echo::TRAILER_BIN_VALUE
    );
}

#[tokio::test]
async fn server_streaming_delivers_every_message_and_trailers() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let request = EchoRequest {
        payload: b"s".to_vec().into(),
        count: 25,
        ..Default::default()
    };
    let mut stream = client.server_stream(request).await.unwrap().into_inner();
    let mut indexes = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        assert_eq!(&message.payload[..], b"s");
        indexes.push(message.index);
    }
    assert_eq!(indexes, (0..25).collect::<Vec<u32>>());
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("echo-trailer").unwrap(), "done");
}

#[tokio::test]
async fn client_streaming_collects_every_message() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let requests = tokio_stream::iter(["a", "b", "c", "d"].map(|p| echo_request(p.as_bytes())));
    let mut request = Request::new(requests);
    request
        .metadata_mut()
        .insert("x-stream", MetadataValue::from_static("client"));
    let response = client.client_stream(request).await.unwrap().into_inner();
    assert_eq!(&response.payload[..], b"abcd");
    assert_eq!(response.index, 4);
    assert_eq!(
        response.metadata.get("x-stream").map(String::as_str),
        Some("client")
    );
}

#[tokio::test]
async fn bidi_streaming_interleaves() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    let mut responses = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Each reply arrives before the next request is sent: the proxy does not buffer streams.
    for i in 0..10u8 {
        tx.send(echo_request(&[i])).await.unwrap();
        let reply: EchoResponse = responses.next().await.unwrap().unwrap();
        assert_eq!(&reply.payload[..], &[i]);
    }
    drop(tx);
    assert!(responses.next().await.is_none());
    let trailers = responses.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("echo-trailer").unwrap(), "done");
}

#[tokio::test]
async fn sixteen_mib_message_both_ways() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let payload: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let response = client
        .unary(echo_request(&payload))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.payload.len(), payload.len());
    assert!(
        response.payload[..] == payload[..],
        "payload corrupted in transit"
    );
}

#[tokio::test]
async fn backend_status_codes_and_messages_pass_through() {
    let (_backend, proxy) = echo_stack().await;
    let mut client = echo_client(proxy.url()).await;
    let table = [
        (Code::NotFound, "shelf 7 not found"),
        (Code::PermissionDenied, "no, not you"),
        (
            Code::ResourceExhausted,
            "ünïcödé and 100% percent-encoded: ok?",
        ),
        (Code::Internal, "line one\nline two"),
    ];
    for (code, message) in table {
        let request = EchoRequest {
            fail_code: code as i32,
            fail_message: message.into(),
            ..Default::default()
        };
        let status = client.unary(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{message}");
        assert_eq!(status.message(), message);
        // Streaming calls carry the same status in trailers after headers.
        let status = match client.server_stream(request).await {
            Err(status) => status,
            Ok(response) => response.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(status.code(), code, "stream: {message}");
        assert_eq!(status.message(), message);
    }
}

#[tokio::test]
async fn concurrent_calls_on_one_connection() {
    let (_backend, proxy) = echo_stack().await;
    let client = echo_client(proxy.url()).await;
    let calls = (0..200u32).map(|i| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let payload = i.to_be_bytes().to_vec();
            let reply = client
                .unary(echo_request(&payload))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(&reply.payload[..], &payload[..]);
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
}

#[tokio::test]
async fn several_backend_connections_share_the_calls() {
    let backend = start_echo().await;
    let mut settings = settings(backend.addr());
    settings.backend_connections = 3;
    let proxy = RunningProxy::start(&echo_config(), settings).await;
    let client = echo_client(proxy.url()).await;
    let calls: Vec<_> = (0..60u32)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let payload = i.to_be_bytes().to_vec();
                let reply = client
                    .unary(echo_request(&payload))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(&reply.payload[..], &payload[..]);
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
}
