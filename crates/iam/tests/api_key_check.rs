//! The API-key check endpoint over real sockets: `iam::serve` on 127.0.0.1:0, keys created and
//! revoked by a second store connection (as the CLI would) while it serves, on both store
//! backends; raw HTTP/1.1 for the malformed requests, and one HTTP/2 (h2c) client (the wire
//! protocol, on SQLite only).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use iam::{KeyServerUrl, Store};
use keycheck::CheckResponse;
use serde_json::{Value, json};
use testkit::{KeyServer, TestStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const NOW: u64 = 1_750_000_000;
const CHECK: &str = "/v1/services/bookstore.endpoints.my-project.cloud.goog:check";

/// A response read off the wire: status code, lower-cased header block, body.
struct Raw {
    status: u16,
    headers: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Writes `request` as it is on a new connection and reads the answer until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    Raw {
        status,
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A POST with `content_type` (none if `None`) and a `Content-Length` body.
async fn post(addr: SocketAddr, path: &str, content_type: Option<&str>, body: &[u8]) -> Raw {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        request.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes).await
}

/// The check of `key` as the proxy sends it; asserts the 200 and its headers.
async fn check(addr: SocketAddr, key: &str) -> CheckResponse {
    let body = json!({ "api_key": key }).to_string();
    let reply = post(addr, CHECK, Some("application/json"), body.as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.headers.contains("cache-control: no-store"),
        "{}",
        reply.headers
    );
    assert!(
        reply.headers.contains("content-type: application/json"),
        "{}",
        reply.headers
    );
    CheckResponse::from_json(reply.body.as_bytes()).unwrap()
}

fn setup(ts: &TestStore) -> Store {
    Store::open(ts.location()).unwrap()
}

async fn answers_valid_unknown_revoked_and_follows_the_store(ts: TestStore) {
    let mut cli = setup(&ts);
    let (key, record) = cli.create_api_key("my-project", Some("web"), NOW).unwrap();
    let server = KeyServer::start(ts.location()).await;

    // The exact bodies of the protocol.
    let body = json!({ "api_key": key }).to_string();
    let reply = post(
        server.addr,
        CHECK,
        Some("application/json"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({"valid": true, "consumer_project": "my-project"})
    );
    let reply = post(
        server.addr,
        CHECK,
        Some("application/json"),
        br#"{"api_key": "AIzaSyNotAKeyOfThisStore0000000000000000"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"valid": false}));

    // Any service name: the key is the project's, not the service's.
    for path in [
        "/v1/services/other.example.com:check",
        "/v1/services/a%20b:check",
    ] {
        let reply = post(server.addr, path, Some("application/json"), body.as_bytes()).await;
        assert_eq!(reply.json()["valid"], true, "{path}");
    }

    // Created by another connection while serving: valid at the next request.
    let (key2, _record2) = cli.create_api_key("other-project", None, NOW).unwrap();
    assert_eq!(
        check(server.addr, &key2).await,
        CheckResponse::Valid {
            consumer_project: "other-project".into()
        }
    );
    // Revoked while serving: invalid at the next request, like an unknown key (the answer
    // names no key id and no reason: the caller is anonymous).
    cli.revoke_api_key(&record.id, NOW + 1).unwrap();
    let reply = post(
        server.addr,
        CHECK,
        Some("application/json"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"valid": false}));
    assert!(matches!(
        check(server.addr, &key2).await,
        CheckResponse::Valid { .. }
    ));

    // Other members are ignored; a charset parameter is fine.
    let reply = post(
        server.addr,
        CHECK,
        Some("Application/JSON; charset=utf-8"),
        json!({"api_key": key2, "extra": [1, 2]})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(reply.json()["consumer_project"], "other-project");
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let ts = TestStore::sqlite();
    let mut cli = setup(&ts);
    let (key, _) = cli.create_api_key("my-project", None, NOW).unwrap();
    let server = KeyServer::start(ts.location()).await;
    let addr = server.addr;

    let bad_bodies: &[&[u8]] = &[
        b"",
        b"not json",
        b"{\"api_key\": ",
        b"{}",
        b"{\"api_key\": 5}",
        b"{\"api_key\": null}",
        b"[\"AIza\"]",
        b"\"AIzaSyD-abcdefghijklmnopqrstuvwxyz01234\"",
    ];
    for body in bad_bodies {
        let reply = post(addr, CHECK, Some("application/json"), body).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(reply.status, 400, "{shown}: {}", reply.body);
        assert!(reply.headers.contains("cache-control: no-store"));
        let error = &reply.json()["error"];
        assert_eq!(error["code"], 400);
        assert_eq!(error["status"], "INVALID_ARGUMENT");
        // The message never quotes the body back (it may hold a key).
        assert!(!reply.body.contains("abcdefghijklmnop"), "{}", reply.body);
    }

    for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
        let body = json!({ "api_key": key }).to_string();
        let reply = post(addr, CHECK, content_type, body.as_bytes()).await;
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert_eq!(reply.json()["error"]["code"], 415);
    }

    // 8 KiB exactly is accepted (a key padded with spaces) ...
    let mut body = json!({ "api_key": key }).to_string().into_bytes();
    body.resize(iam::CHECK_BODY_LIMIT, b' ');
    let reply = post(addr, CHECK, Some("application/json"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["valid"], true);
    // ... one byte more is not, whether declared up front ...
    body.push(b' ');
    let reply = post(addr, CHECK, Some("application/json"), &body).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], 413);
    // ... or only found out while reading a chunked body.
    let mut chunked = format!(
        "POST {CHECK} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        chunked.extend_from_slice(format!("{:x}\r\n", 2000).as_bytes());
        chunked.extend_from_slice(&[b' '; 2000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = raw(addr, &chunked).await;
    assert_eq!(reply.status, 413, "{}", reply.body);

    // Wrong method: 405 naming POST; wrong paths: 404.
    let reply = raw(
        addr,
        format!("GET {CHECK} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert!(reply.headers.contains("allow: post"), "{}", reply.headers);
    assert_eq!(reply.json()["error"]["status"], "METHOD_NOT_ALLOWED");
    let body = json!({ "api_key": key }).to_string();
    for path in [
        "/v1/services/:check",
        "/v1/services/x:chek",
        "/v1/services/a/b:check",
    ] {
        let reply = post(addr, path, Some("application/json"), body.as_bytes()).await;
        assert_eq!(reply.status, 404, "{path}");
    }

    // After all that, the server still answers.
    assert!(check(addr, &key).await.is_valid());
    server.stop().await;
}

#[tokio::test]
async fn answers_over_h2c_at_the_url_key_server_url_builds() {
    let ts = TestStore::sqlite();
    let mut cli = setup(&ts);
    let (key, _record) = cli.create_api_key("my-project", None, NOW).unwrap();
    let server = KeyServer::start(ts.location()).await;
    let base = KeyServerUrl::parse(&format!("http://{}", server.addr)).unwrap();
    let url = base.check_url("bookstore.endpoints.my-project.cloud.goog");
    assert_eq!(url, format!("http://{}{CHECK}", server.addr));

    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let request = Request::post(url.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                json!({ "api_key": key }).to_string(),
            )))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            CheckResponse::from_json(&bytes).unwrap(),
            CheckResponse::Valid {
                consumer_project: "my-project".into()
            }
        );
    }
    drop(sender);
    server.stop().await;
}

testkit::store_tests!(async: answers_valid_unknown_revoked_and_follows_the_store);
