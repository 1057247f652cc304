#![allow(clippy::unwrap_used)]
use super::*;

fn log() -> crate::body::CallLog {
    crate::body::CallLog::new(
        "127.0.0.1:1".parse().unwrap(),
        std::time::Instant::now(),
        &crate::access_log::RejectedLines::new(Default::default()),
    )
}

fn reader(bytes: &[u8]) -> GrpcReader {
    GrpcReader {
        body: ProxyBody::empty(log()),
        buffer: BytesMut::from(bytes),
        status: None,
    }
}

#[test]
fn messages_are_read_whole_and_bounded() {
    let two = [frame_message(b"ab"), frame_message(b"")].concat();
    let mut r = reader(&two);
    assert!(matches!(r.complete_message(), Some(Event::Message(m)) if &m[..] == b"ab"));
    assert!(matches!(r.complete_message(), Some(Event::Message(m)) if m.is_empty()));
    assert!(r.complete_message().is_none(), "nothing left");
    // A partial frame waits for more.
    let framed = frame_message(b"abc");
    for cut in 0..framed.len() {
        assert!(
            reader(&framed[..cut]).complete_message().is_none(),
            "cut {cut}"
        );
    }
    // Compressed, or over the bound: the proxy's INTERNAL, not a wait.
    let mut compressed = framed.to_vec();
    compressed[0] = 1;
    assert!(matches!(reader(&compressed).complete_message(), Some(Event::End(s)) if s.code == 13));
    let over = u32::try_from(MAX_BODY_BYTES + 1).unwrap().to_be_bytes();
    let header = [&[0u8][..], &over[..]].concat();
    assert!(matches!(reader(&header).complete_message(), Some(Event::End(s)) if s.code == 13));
}

#[tokio::test]
async fn a_body_without_a_status_or_cut_inside_a_message_is_internal() {
    let mut r = reader(&frame_message(b"abc")[..4]);
    assert!(
        matches!(r.next().await, Event::End(s) if s.code == 13 && s.message.contains("inside"))
    );
    let mut r = reader(&[]);
    assert!(
        matches!(r.next().await, Event::End(s) if s.code == 13 && s.message.contains("without a status"))
    );
    let mut r = reader(&[]);
    r.status = Some(Status::internal("x"));
    assert!(matches!(r.next().await, Event::End(s) if s.message == "x"));
}

#[test]
fn a_stream_closes_its_array_and_reports_a_failure_in_trailers() {
    let ok = closing(&Status {
        code: 0,
        message: String::new(),
        details: None,
    });
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].data_ref().unwrap(), &Bytes::from_static(b"]"));
    let failed = closing(&Status {
        code: 14,
        message: "gone away".into(),
        details: None,
    });
    assert_eq!(failed.len(), 2);
    let trailers = failed[1].trailers_ref().unwrap();
    assert_eq!(trailers["grpc-status"], "14");
    assert_eq!(trailers["grpc-message"], "gone%20away");
}

#[test]
fn statuses_are_read_from_headers() {
    let mut headers = HeaderMap::new();
    assert!(status_of(&headers).is_none());
    headers.insert("grpc-status", HeaderValue::from_static("5"));
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("no%20such%20shelf"),
    );
    assert_eq!(
        status_of(&headers),
        Some(Status {
            code: 5,
            message: "no such shelf".into(),
            details: None
        })
    );
}
