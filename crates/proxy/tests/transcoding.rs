//! HTTP/JSON transcoding through the proxy, over real sockets with a plain HTTP client
//! (reqwest, HTTP/1.1 and HTTP/2): the Bookstore's `google.api.http` annotations against the
//! answers of the same calls over gRPC, the config's `http.rules`, ESP's 404, error mapping,
//! bounds, and JWT checks taken from the same places as for gRPC calls.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bookstore::pb::bookstore_client::BookstoreClient;
use bookstore::pb::*;
use common::*;
use jose::GeneratedKey;
use keysets::test_server::{KeyServer, Reply, jwks};
use serde_json::{Value, json};

/// An HTTP answer: status, content type, JSON body.
struct Answer {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text:?}"));
    Answer {
        status,
        content_type,
        headers,
        json,
    }
}

fn shelf_json(shelf: &Shelf) -> Value {
    // proto3 JSON: int64 as a string.
    json!({"id": shelf.id.to_string(), "theme": shelf.theme})
}

fn book_json(book: &Book) -> Value {
    json!({"id": book.id.to_string(), "author": book.author, "title": book.title})
}

/// Every Bookstore binding over HTTP/1.1 and HTTP/2, each answer equal to the gRPC answer for
/// the same data.
#[tokio::test]
async fn the_bookstore_over_http_matches_its_grpc_answers() {
    let (_backend, proxy) = bookstore_stack().await;
    let mut grpc = BookstoreClient::connect(proxy.url()).await.unwrap();
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for client in [&http1, &http2] {
        let url = |path: &str| format!("{}{path}", proxy.url());
        let shelves = grpc.list_shelves(()).await.unwrap().into_inner().shelves;
        let answer = call(client, reqwest::Method::GET, url("/v1/shelves"), None, &[]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "application/json");
        assert_eq!(
            answer.json,
            json!({"shelves": shelves.iter().map(shelf_json).collect::<Vec<_>>()})
        );

        // POST with `body: "shelf"`; the created shelf is what gRPC then reads.
        let answer = call(
            client,
            reqwest::Method::POST,
            url("/v1/shelves"),
            Some(r#"{"theme": "Poetry"}"#),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let id: i64 = answer.json["id"].as_str().unwrap().parse().unwrap();
        let shelf = grpc
            .get_shelf(GetShelfRequest { shelf: id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shelf.theme, "Poetry");
        assert_eq!(answer.json, shelf_json(&shelf));
        let answer = call(
            client,
            reqwest::Method::GET,
            url(&format!("/v1/shelves/{id}")),
            None,
            &[],
        )
        .await;
        assert_eq!(answer.json, shelf_json(&shelf));

        // A path variable and `body: "book"`.
        let answer = call(
            client,
            reqwest::Method::POST,
            url(&format!("/v1/shelves/{id}/books")),
            Some(r#"{"author": "Rumi", "title": "Masnavi"}"#),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let books = grpc
            .list_books(ListBooksRequest { shelf: id })
            .await
            .unwrap()
            .into_inner()
            .books;
        assert_eq!(books.len(), 1);
        assert_eq!(answer.json, book_json(&books[0]));
        let book = books[0].id;
        let listed = call(
            client,
            reqwest::Method::GET,
            url(&format!("/v1/shelves/{id}/books")),
            None,
            &[],
        )
        .await;
        assert_eq!(listed.json, json!({"books": [book_json(&books[0])]}));
        let got = call(
            client,
            reqwest::Method::GET,
            url(&format!("/v1/shelves/{id}/books/{book}")),
            None,
            &[],
        )
        .await;
        assert_eq!(got.json, book_json(&books[0]));

        // DELETE answers google.protobuf.Empty as `{}`; the book is gone for gRPC too.
        let deleted = call(
            client,
            reqwest::Method::DELETE,
            url(&format!("/v1/shelves/{id}/books/{book}")),
            None,
            &[],
        )
        .await;
        assert_eq!((deleted.status, deleted.json.clone()), (200, json!({})));
        let status = grpc
            .get_book(GetBookRequest { shelf: id, book })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);

        // The backend's NOT_FOUND: HTTP 404 and the status as JSON, its message the backend's.
        let gone = call(
            client,
            reqwest::Method::GET,
            url(&format!("/v1/shelves/{id}/books/{book}")),
            None,
            &[],
        )
        .await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.json["code"], json!(5));
        assert_eq!(gone.json["message"], json!(status.message()));
        let deleted = call(
            client,
            reqwest::Method::DELETE,
            url(&format!("/v1/shelves/{id}")),
            None,
            &[],
        )
        .await;
        assert_eq!(deleted.status, 200);
    }
}

/// Routes no rule binds: ESP's 404 JSON, without reaching the backend; a gRPC path with a JSON
/// body stays a protocol error (415).
#[tokio::test]
async fn unbound_routes_are_esp_404s() {
    let (_backend, proxy) = bookstore_stack().await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/nothing"),
        (reqwest::Method::PUT, "/v1/shelves"),
        (reqwest::Method::GET, "/v1/shelves/1/books/2/extra"),
        (reqwest::Method::POST, "/v1/shelves/1"),
        (reqwest::Method::GET, "/"),
    ] {
        let answer = call(
            &client,
            method.clone(),
            format!("{}{path}", proxy.url()),
            None,
            &[],
        )
        .await;
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(
            answer.json,
            json!({"code": 404, "message": "The current request is not defined by this API."}),
            "{method} {path}"
        );
    }
    let answer = call(
        &client,
        reqwest::Method::POST,
        format!(
            "{}/endpoints.examples.bookstore.Bookstore/ListShelves",
            proxy.url()
        ),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 415);
}

/// Requests that do not make a message: 400 with the transcoder's reason; a body over the bound:
/// 413; neither reaches the backend.
#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let (_backend, proxy) = bookstore_stack().await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", proxy.url());
    let not_json = call(
        &client,
        reqwest::Method::POST,
        url("/v1/shelves"),
        Some("{not json"),
        &[],
    )
    .await;
    assert_eq!(not_json.status, 400, "{}", not_json.json);
    assert!(
        not_json.json["message"].as_str().unwrap().len() > 10,
        "{}",
        not_json.json
    );
    let not_a_number = call(
        &client,
        reqwest::Method::GET,
        url("/v1/shelves/abc"),
        None,
        &[],
    )
    .await;
    assert_eq!(not_a_number.status, 400, "{}", not_a_number.json);
    assert!(
        not_a_number.json["message"]
            .as_str()
            .unwrap()
            .contains("shelf"),
        "{}",
        not_a_number.json
    );
    let big = format!(
        r#"{{"theme": "{}"}}"#,
        "x".repeat(proxy::MAX_HTTP_JSON_BODY_BYTES)
    );
    let too_big = call(
        &client,
        reqwest::Method::POST,
        url("/v1/shelves"),
        Some(&big),
        &[],
    )
    .await;
    assert_eq!(too_big.status, 413);
    assert_eq!(
        too_big.json["message"],
        json!("The request body is over the 4 MiB limit of HTTP/JSON calls.")
    );
    // Nothing was created by any of them.
    let shelves = call(&client, reqwest::Method::GET, url("/v1/shelves"), None, &[]).await;
    assert_eq!(shelves.json["shelves"].as_array().unwrap().len(), 2);
}

/// The config's `http.rules` replace a method's annotation, and add routes; a client-streaming
/// method bound by a rule is refused over HTTP with a message saying why.
#[tokio::test]
async fn config_http_rules_override_annotations_and_streaming_requests_are_refused() {
    let backend = start_bookstore().await;
    let config = bookstore_service(&format!(
        "{BOOKSTORE_CONFIG}http:
  rules:
  - selector: endpoints.examples.bookstore.Bookstore.ListShelves
    get: /v2/all-shelves
    additional_bindings:
    - get: /v2/shelves:list
"
    ));
    let proxy = RunningProxy::start(&config, settings(backend.addr())).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", proxy.url());
    for path in ["/v2/all-shelves", "/v2/shelves:list"] {
        let answer = call(&client, reqwest::Method::GET, url(path), None, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(
            answer.json["shelves"].as_array().unwrap().len(),
            2,
            "{path}"
        );
    }
    // The annotation's route is replaced, the other methods' stay.
    let old = call(&client, reqwest::Method::GET, url("/v1/shelves"), None, &[]).await;
    assert_eq!(old.status, 404);
    let other = call(
        &client,
        reqwest::Method::GET,
        url("/v1/shelves/1"),
        None,
        &[],
    )
    .await;
    assert_eq!(other.status, 200);

    let echo = start_echo().await;
    let config = echo_service(&format!(
        "{ECHO_CONFIG}http:
  rules:
  - selector: esprit.echo.v1.Echo.ClientStream
    post: /v1/upload
    body: \"*\"
"
    ));
    let proxy = RunningProxy::start(&config, settings(echo.addr())).await;
    let answer = call(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/upload", proxy.url()),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 501);
    assert_eq!(
        answer.json["message"],
        json!(
            "This method streams its requests, which HTTP/JSON cannot carry: call it over gRPC or gRPC-Web."
        )
    );
}

const SERVICE: &str = "bookstore.endpoints.example.cloud.goog";
const ISSUER: &str = "caller@example-project.iam.gserviceaccount.com";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &GeneratedKey) -> String {
    let now = now();
    let claims =
        json!({"iss": ISSUER, "sub": ISSUER, "aud": SERVICE, "iat": now, "exp": now + 600});
    key.signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap()
}

/// JWTs are taken from the same places as for gRPC calls (`Authorization: Bearer`, the
/// `access_token` query parameter) and rejections get esprit's HTTP answers.
#[tokio::test]
async fn jwt_checks_apply_to_http_calls() {
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let config = bookstore_service(&format!(
        "{BOOKSTORE_CONFIG}authentication:
  providers:
  - id: caller
    issuer: {ISSUER}
    jwks_uri: {}
  rules:
  - selector: \"*\"
    requirements:
    - provider_id: caller
",
        keys.url("/jwks")
    ));
    let backend = start_bookstore().await;
    let proxy = RunningProxy::start(&config, settings(backend.addr())).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", proxy.url());

    let missing = call(&client, reqwest::Method::GET, url("/v1/shelves"), None, &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json,
        json!({"code": 401, "message": "Jwt is missing"})
    );
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    // Refused before the body is read: a POST without a token creates nothing.
    let refused = call(
        &client,
        reqwest::Method::POST,
        url("/v1/shelves"),
        Some(r#"{"theme":"X"}"#),
        &[],
    )
    .await;
    assert_eq!(refused.status, 401);

    let token = token(&key);
    let bearer = format!("Bearer {token}");
    let ok = call(
        &client,
        reqwest::Method::GET,
        url("/v1/shelves"),
        None,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    assert_eq!(ok.json["shelves"].as_array().unwrap().len(), 2);
    let query = call(
        &client,
        reqwest::Method::GET,
        url(&format!("/v1/shelves/1?access_token={token}")),
        None,
        &[],
    )
    .await;
    assert_eq!(query.status, 200, "{}", query.json);
    assert_eq!(query.json["theme"], json!("Fiction"));
    let bad = call(
        &client,
        reqwest::Method::GET,
        url("/v1/shelves"),
        None,
        &[("authorization", "Bearer a.b.c")],
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.headers["www-authenticate"],
        "Bearer, error=\"invalid_token\""
    );
}

/// A body sent too slowly is given up after the stream idle timeout (the client cannot hold the
/// call open), with ESP's "stream timeout" as JSON; nothing is forwarded.
#[tokio::test]
async fn a_stalled_body_ends_at_the_stream_idle_timeout() {
    use http_body_util::BodyExt as _;
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    settings.stream_idle_timeout = std::time::Duration::from_millis(300);
    let proxy = RunningProxy::start(&bookstore_config(), settings).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >(1);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut sender = h2c(proxy.addr).await;
    let request = http::Request::post(format!("http://{}/v1/shelves", proxy.addr))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    tx.send(Ok(http_body::Frame::data(bytes::Bytes::from_static(
        b"{\"theme\"",
    ))))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sender.send_request(request),
    )
    .await
    .expect("answered within the bound")
    .unwrap();
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, json!({"code": 408, "message": "stream timeout"}));
    drop(tx);
    let client = reqwest::Client::new();
    let shelves = call(
        &client,
        reqwest::Method::GET,
        format!("{}/v1/shelves", proxy.url()),
        None,
        &[],
    )
    .await;
    assert_eq!(shelves.json["shelves"].as_array().unwrap().len(), 2);
}
