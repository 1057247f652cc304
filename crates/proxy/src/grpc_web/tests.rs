#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn decoder() -> (TextDecoder, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (TextDecoder::new(flag.clone()), flag)
}

/// A gRPC frame: flag 0, big-endian length, message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[test]
fn content_types_and_accept_as_envoy_reads_them() {
    use Encoding::{Binary, Text};
    type Row<'a> = (&'a str, Option<&'a str>, Option<(Encoding, Encoding)>);
    let table: &[Row] = &[
        ("application/grpc-web", None, Some((Binary, Binary))),
        ("application/grpc-web+proto", None, Some((Binary, Binary))),
        ("application/grpc-web-text", None, Some((Text, Binary))),
        (
            "application/grpc-web-text",
            Some("application/grpc-web-text"),
            Some((Text, Text)),
        ),
        (
            "application/grpc-web-text+proto",
            Some("application/grpc-web-text+proto"),
            Some((Text, Text)),
        ),
        (
            "application/grpc-web",
            Some("application/grpc-web-text"),
            Some((Binary, Text)),
        ),
        ("application/grpc-web", Some("*/*"), Some((Binary, Binary))),
        ("application/grpc-web+json", None, None),
        ("application/grpc", None, None),
        ("application/grpc-web; charset=utf-8", None, None),
        ("text/plain", None, None),
    ];
    for (content_type, accept, want) in table {
        let mut pairs = vec![("content-type", *content_type)];
        if let Some(accept) = accept {
            pairs.push(("accept", accept));
        }
        let got = detect(&headers(&pairs)).map(|web| (web.request, web.response));
        assert_eq!(got, *want, "{content_type} {accept:?}");
    }
    assert!(detect(&HeaderMap::new()).is_none());
}

#[test]
fn the_request_becomes_a_grpc_request() {
    let (mut parts, ()) = http::Request::builder()
        .version(http::Version::HTTP_11)
        .uri("/p.S/M")
        .header("content-type", "application/grpc-web-text")
        .header("content-length", "12")
        .header("authorization", "Bearer t")
        .body(())
        .unwrap()
        .into_parts();
    let mut web = detect(&parts.headers).unwrap();
    assert!(
        web.rewrite_request(&mut parts).is_some(),
        "text needs a decoder"
    );
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert_eq!(parts.headers["content-type"], "application/grpc");
    assert_eq!(parts.headers["te"], "trailers");
    assert_eq!(parts.headers["grpc-accept-encoding"], "identity");
    assert_eq!(parts.headers["authorization"], "Bearer t");
    assert!(!parts.headers.contains_key("content-length"));

    let (mut parts, ()) = http::Request::builder()
        .header("content-type", "application/grpc-web")
        .header("grpc-accept-encoding", "gzip")
        .body(())
        .unwrap()
        .into_parts();
    let mut web = detect(&parts.headers).unwrap();
    assert!(
        web.rewrite_request(&mut parts).is_none(),
        "binary passes through"
    );
    assert_eq!(parts.headers["grpc-accept-encoding"], "gzip");
}

#[test]
fn trailer_frame_bytes() {
    let trailers = headers(&[("grpc-status", "0"), ("grpc-message", "ok"), ("x-a", "1")]);
    let block = b"grpc-status: 0\r\ngrpc-message: ok\r\nx-a: 1\r\n";
    let mut want = vec![0x80, 0, 0, 0, block.len() as u8];
    want.extend_from_slice(block);
    assert_eq!(trailer_frame(&trailers).as_ref(), want.as_slice());
    assert_eq!(
        trailer_frame(&HeaderMap::new()).as_ref(),
        &[0x80, 0, 0, 0, 0]
    );
}

#[test]
fn text_is_decoded_across_any_split() {
    let body = [frame(b"hello"), frame(b""), frame(&[7; 300])].concat();
    let text = STANDARD.encode(&body);
    for split in 0..=text.len() {
        let (mut decoder, flag) = decoder();
        let mut out = decoder.decode(&text.as_bytes()[..split]).unwrap().to_vec();
        out.extend_from_slice(&decoder.decode(&text.as_bytes()[split..]).unwrap());
        decoder.finish().unwrap();
        assert_eq!(out, body, "split at {split}");
        assert!(!flag.load(Ordering::Acquire));
    }
}

#[test]
fn text_decoding_keeps_at_most_three_bytes() {
    let (mut decoder, _) = decoder();
    let text = STANDARD.encode(frame(b"abcdefgh"));
    for byte in text.as_bytes() {
        decoder.decode(std::slice::from_ref(byte)).unwrap();
        assert!(decoder.carry_len < 4);
    }
    decoder.finish().unwrap();
}

#[test]
fn padded_messages_may_follow_each_other() {
    let (mut decoder, _) = decoder();
    let text = format!(
        "{}{}",
        STANDARD.encode(frame(b"a")),
        STANDARD.encode(frame(b"bc"))
    );
    assert!(text[..text.len() - 1].contains('='), "{text}");
    let out = decoder.decode(text.as_bytes()).unwrap();
    assert_eq!(
        out.as_ref(),
        [frame(b"a"), frame(b"bc")].concat().as_slice()
    );
}

#[test]
fn broken_text_is_refused_and_remembered() {
    for chunks in [
        &["AAAA", "!!!!"][..],
        &["AA=A"],
        &["AAAA", "A\nAA"],
        &["AB=="],
    ] {
        let (mut decoder, flag) = decoder();
        let failed = chunks
            .iter()
            .any(|chunk| decoder.decode(chunk.as_bytes()).is_err());
        assert!(failed, "{chunks:?}");
        assert!(flag.load(Ordering::Acquire), "{chunks:?}");
    }
}

#[test]
fn a_group_left_over_at_the_end_is_refused() {
    let (mut decoder, flag) = decoder();
    assert!(decoder.decode(b"AAAAA").is_ok());
    assert!(decoder.finish().is_err());
    assert!(flag.load(Ordering::Acquire));
}

#[test]
fn each_response_message_ends_its_own_base64() {
    let mut encoder = TextEncoder::default();
    let one = frame(b"hello");
    let two = frame(b"");
    // Byte by byte: each message's base64 is complete (padded) by the time its last byte went.
    let mut text = String::new();
    for (i, byte) in one.iter().enumerate() {
        text.push_str(std::str::from_utf8(&encoder.encode(&[*byte])).unwrap());
        if i + 1 < one.len() {
            assert!(encoder.carry.len() < 3);
        }
    }
    assert_eq!(text, STANDARD.encode(&one));
    let text = encoder.encode(&two);
    assert_eq!(text.as_ref(), STANDARD.encode(&two).as_bytes());
    let trailers = trailer_frame(&headers(&[("grpc-status", "0")]));
    assert_eq!(
        encoder.finish(&trailers).as_ref(),
        STANDARD.encode(&trailers).as_bytes()
    );
}

proptest! {
    /// Any split of any frames: the text, decoded as 4-character groups (how gRPC-Web clients
    /// read it), gives back the bytes, and every message is complete when its last byte went.
    #[test]
    fn encoded_responses_decode_to_the_frames(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
        cuts in proptest::collection::vec(0usize..200, 0..6),
    ) {
        let body: Vec<u8> = messages.iter().flat_map(|m| frame(m)).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
        cuts.sort_unstable();
        let mut encoder = TextEncoder::default();
        let mut text = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            text.extend_from_slice(&encoder.encode(&body[at..cut]));
            at = cut;
        }
        prop_assert!(encoder.carry.is_empty(), "whole frames leave nothing behind");
        let (mut decoder, _) = decoder();
        let decoded = decoder.decode(&text).unwrap();
        decoder.finish().unwrap();
        prop_assert_eq!(decoded.as_ref(), body.as_slice());
    }

    #[test]
    fn arbitrary_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..64), split in 0usize..64) {
        let (mut decoder, _) = decoder();
        let split = split.min(text.len());
        let _ = decoder.decode(&text[..split]);
        let _ = decoder.decode(&text[split..]);
        let _ = decoder.finish();
    }
}
