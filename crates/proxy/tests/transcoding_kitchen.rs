//! HTTP/JSON transcoding of every template feature and every well-known type, through the proxy
//! to a backend that answers each call with its request (`testkit::mirror`): what the backend
//! received is compared with the protobuf form of the same data (the JSON read by prost-reflect),
//! and the HTTP answer with that message's JSON. Server streaming, error mapping, trailers-only
//! answers and the print options too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
#![recursion_limit = "256"]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Value, json};
use service_config::{Descriptor, ServiceConfig};
use testkit::mirror::Mirror;

const SERVICE: &str = "kitchen.v1.KitchenService";

fn descriptor() -> Descriptor {
    let proto = testkit::repo_root().join("crates/transcode/tests/proto/kitchen.proto");
    Descriptor::compile_protos(&[proto]).unwrap()
}

fn config(http: &str) -> ServiceConfig {
    let yaml = format!(
        "type: google.api.Service
config_version: 3
name: kitchen.example.com
apis:
- name: {SERVICE}
usage:
  rules:
  - selector: \"*\"
    allow_unregistered_calls: true
{http}"
    );
    service_config::from_yaml(&yaml, descriptor()).unwrap()
}

fn kitchen(config: &ServiceConfig) -> MessageDescriptor {
    config
        .descriptor_pool()
        .get_message_by_name("kitchen.v1.Kitchen")
        .unwrap()
}

/// The protobuf form of `json` (what a gRPC client would send for the same data).
fn message(descriptor: &MessageDescriptor, json: &Value) -> DynamicMessage {
    DynamicMessage::deserialize_with_options(descriptor.clone(), json, &DeserializeOptions::new())
        .unwrap()
}

/// The JSON of a message as the proxy prints it by default.
fn json_of(message: &DynamicMessage) -> Value {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .unwrap()
}

fn received(mirror: &Mirror, descriptor: &MessageDescriptor) -> (String, DynamicMessage) {
    let last = mirror.last();
    assert_eq!(last.messages.len(), 1, "one request message");
    let message = DynamicMessage::decode(descriptor.clone(), last.messages[0].clone()).unwrap();
    (last.path, message)
}

async fn stack(
    http: &str,
    tune: impl FnOnce(&mut proxy::ProxySettings),
) -> (Mirror, RunningProxy, ServiceConfig) {
    let mirror = Mirror::start().await;
    let config = config(http);
    let mut settings = settings(mirror.addr);
    tune(&mut settings);
    let proxy = RunningProxy::start(&config, settings).await;
    (mirror, proxy, config)
}

async fn send(
    method: reqwest::Method,
    url: String,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "every answer is JSON"
    );
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// Every field kind and every well-known type, in a body (`body: "*"`) and back.
#[tokio::test]
async fn every_type_round_trips_through_a_body() {
    let (mirror, proxy, config) = stack("", |_| {}).await;
    let descriptor = kitchen(&config);
    let data = json!({
        "fDouble": 1.5, "fFloat": 2.5, "fInt32": -3, "fInt64": "-4000000000000",
        "fUint32": 5, "fUint64": "6000000000000", "fSint32": -7, "fSint64": "-8",
        "fFixed32": 9, "fFixed64": "10", "fSfixed32": -11, "fSfixed64": "-12",
        "fBool": true, "fString": "héllo \"quoted\"", "fBytes": "AAEC/w==",
        "flavor": "SOUR",
        "nested": {"name": "n", "count": 2, "flavor": "BITTER", "tags": ["a", "b"],
                   "child": {"name": "deeper"}},
        "rString": ["x", "y"], "rInt64": ["1", "-2"], "rFlavor": ["SWEET", "SOUR"],
        "rNested": [{"name": "r1"}, {"count": 3}], "rBytes": ["AQ==", ""],
        "mString": {"k": "v"}, "mNested": {"7": {"name": "seven"}}, "mFlavor": {"f": "SWEET"},
        "oNested": {"name": "chosen"},
        "optInt32": 0,
        "timestamp": "2024-02-29T12:34:56.789Z", "duration": "3.500s",
        "fieldMask": "fString,nested.name",
        "struct": {"a": 1, "b": [true, null, "s"], "c": {"d": {}}},
        "value": [1, "two", {"three": 3}], "listValue": ["x", 2, false],
        "any": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"},
        "empty": {},
        "wDouble": 0.25, "wFloat": 0.5, "wInt64": "64", "wUint64": "65", "wInt32": 32,
        "wUint32": 33, "wBool": false, "wString": "", "wBytes": "Ynl0ZXM=",
        "rTimestamp": ["1970-01-01T00:00:00Z", "2000-01-01T00:00:00Z"]
    });
    let expected = message(&descriptor, &data);
    let (status, answer) = send(
        reqwest::Method::POST,
        format!("{}/v1/kitchen:echo", proxy.url()),
        Some(data.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (path, got) = received(&mirror, &descriptor);
    assert_eq!(path, "/kitchen.v1.KitchenService/Echo");
    assert_eq!(
        got, expected,
        "the backend got the protobuf form of the JSON"
    );
    assert_eq!(answer, json_of(&expected), "and the answer is its JSON");
    // The backend was called as gRPC.
    let headers = mirror.last().headers;
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["te"], "trailers");
}

/// Path variables (nested fields, enums), query parameters (nested, repeated, enums, and
/// well-known types by their JSON string), a body field with `response_body`.
#[tokio::test]
async fn path_variables_query_parameters_and_body_fields() {
    let (mirror, proxy, config) = stack("", |_| {}).await;
    let descriptor = kitchen(&config);
    let url = |path: &str| format!("{}{path}", proxy.url());
    let query = "fInt32=5&r_string=a&r_string=b&nested.count=3&nested.child.name=kid\
                 &flavor=SOUR&timestamp=2020-01-01T00:00:00Z&duration=1.5s&wString=w%20s\
                 &fieldMask=a,b.c&rFlavor=SWEET&rFlavor=2&fBytes=AQI%3D&wInt64=-9&fBool=true";
    let (status, answer) = send(
        reqwest::Method::GET,
        url(&format!("/v1/kitchen/a%2Fb%20c?{query}")),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let expected = message(
        &descriptor,
        &json!({
            "fString": "a/b c", "fInt32": 5, "rString": ["a", "b"],
            "nested": {"count": 3, "child": {"name": "kid"}}, "flavor": "SOUR",
            "timestamp": "2020-01-01T00:00:00Z", "duration": "1.500s", "wString": "w s",
            "fieldMask": "a,b.c", "rFlavor": ["SWEET", "SOUR"], "fBytes": "AQI=",
            "wInt64": "-9", "fBool": true
        }),
    );
    let (_, got) = received(&mirror, &descriptor);
    assert_eq!(got, expected);
    assert_eq!(answer, json_of(&expected));

    // Two variables, one a nested field, one an enum by name.
    let (status, _) = send(
        reqwest::Method::GET,
        url("/v1/kitchen/pie/flavors/BITTER"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (_, got) = received(&mirror, &descriptor);
    assert_eq!(
        got,
        message(
            &descriptor,
            &json!({"nested": {"name": "pie"}, "flavor": "BITTER"})
        )
    );

    // `body: "nested"` fills that field; `response_body: "nested"` answers only it.
    let (status, answer) = send(
        reqwest::Method::PUT,
        url("/v1/kitchen/outer/nested?fInt32=1"),
        Some(r#"{"name": "inner", "tags": ["t"]}"#.to_owned()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (path, got) = received(&mirror, &descriptor);
    assert_eq!(path, "/kitchen.v1.KitchenService/EchoNested");
    assert_eq!(
        got,
        message(
            &descriptor,
            &json!({"fString": "outer", "fInt32": 1, "nested": {"name": "inner", "tags": ["t"]}})
        )
    );
    assert_eq!(answer, json!({"name": "inner", "tags": ["t"]}));

    // PATCH with `body: "*"` and a path variable.
    let (status, _) = send(
        reqwest::Method::PATCH,
        url("/v1/kitchen/p"),
        Some(r#"{"fInt64": "77"}"#.to_owned()),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (_, got) = received(&mirror, &descriptor);
    assert_eq!(
        got,
        message(&descriptor, &json!({"fString": "p", "fInt64": "77"}))
    );

    // An unknown query parameter is a 400 naming it; the API-key parameters are not (nor a
    // provider's JWT query locations: `transcoding.rs` tests `access_token`).
    let before = mirror.received().len();
    let (status, answer) = send(reqwest::Method::GET, url("/v1/kitchen/x?nope=1"), None, &[]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("nope"),
        "{answer}"
    );
    assert_eq!(mirror.received().len(), before, "not forwarded");
    let (status, _) = send(
        reqwest::Method::GET,
        url("/v1/kitchen/x?key=k&api_key=k"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

/// The template grammar from the config's `http.rules`: `{var=pattern/*}`, `**`, `*`, a verb,
/// percent-decoding; the rule replaces the method's annotation.
#[tokio::test]
async fn template_features_from_config_rules() {
    let rules = "http:
  rules:
  - selector: kitchen.v1.KitchenService.Echo
    get: /v1/{f_string=shelves/*}/books
    additional_bindings:
    - get: /v1/{nested.name=files/**}
    - get: /v1/*/wild/{f_int32}
    - post: /v1/{f_string}:cancel
      body: \"*\"
    - custom:
        kind: HEAD
        path: /v1/head/{f_string}
";
    let (mirror, proxy, config) = stack(rules, |_| {}).await;
    let descriptor = kitchen(&config);
    let url = |path: &str| format!("{}{path}", proxy.url());
    let table: [(reqwest::Method, &str, Option<&str>, Value); 6] = [
        (
            reqwest::Method::GET,
            "/v1/shelves/s1/books",
            None,
            json!({"fString": "shelves/s1"}),
        ),
        (
            reqwest::Method::GET,
            "/v1/shelves/a%20b/books",
            None,
            json!({"fString": "shelves/a b"}),
        ),
        (
            reqwest::Method::GET,
            "/v1/files/a/b/c.txt",
            None,
            json!({"nested": {"name": "files/a/b/c.txt"}}),
        ),
        (
            reqwest::Method::GET,
            "/v1/anything/wild/7",
            None,
            json!({"fInt32": 7}),
        ),
        (
            reqwest::Method::POST,
            "/v1/job-1:cancel",
            Some(r#"{"fBool": true}"#),
            json!({"fString": "job-1", "fBool": true}),
        ),
        (
            reqwest::Method::GET,
            "/v1/shelves/s1/books?fInt64=3",
            None,
            json!({"fString": "shelves/s1", "fInt64": "3"}),
        ),
    ];
    for (method, path, body, want) in table {
        let (status, answer) = send(method.clone(), url(path), body.map(str::to_owned), &[]).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        let (_, got) = received(&mirror, &descriptor);
        assert_eq!(got, message(&descriptor, &want), "{method} {path}");
    }
    // HEAD by a custom rule reaches the method (no body in the answer, by HTTP).
    let response = reqwest::Client::new()
        .head(url("/v1/head/h"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, got) = received(&mirror, &descriptor);
    assert_eq!(got, message(&descriptor, &json!({"fString": "h"})));
    // The annotation's routes are gone; near misses do not match.
    for path in [
        "/v1/kitchen/x",
        "/v1/shelves/s1/s2/books",
        "/v1/job-1:stop",
        "/v1/file",
    ] {
        let (status, _) = send(reqwest::Method::GET, url(path), None, &[]).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// A server stream is a JSON array of its messages; an error before any message is answered
/// as a unary error; an error after some closes the array and is in the trailers.
#[tokio::test]
async fn server_streams_are_json_arrays() {
    let (mirror, proxy, config) = stack("", |_| {}).await;
    let descriptor = kitchen(&config);
    let url = format!("{}/v1/kitchen/s:stream?fInt32=4", proxy.url());
    let (status, answer) = send(reqwest::Method::GET, url.clone(), None, &[]).await;
    assert_eq!(status, 200);
    let one = json_of(&message(&descriptor, &json!({"fString": "s", "fInt32": 4})));
    assert_eq!(answer, Value::Array(vec![one.clone(); Mirror::REPEAT]));
    assert_eq!(mirror.last().path, "/kitchen.v1.KitchenService/EchoStream");

    let (status, answer) = send(
        reqwest::Method::GET,
        url.clone(),
        None,
        &[("mirror-status", "7"), ("mirror-message", "no entry")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(answer, json!({"code": 7, "message": "no entry"}));

    // Over HTTP/2 the trailers say how the stream ended.
    let mut sender = h2c(proxy.addr).await;
    let request = http::Request::get(url)
        .header("mirror-status", "14")
        .header("mirror-message", "went away")
        .header("mirror-messages-first", "2")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    let body: Value = serde_json::from_slice(&collected.to_bytes()).unwrap();
    assert_eq!(body, Value::Array(vec![one; 2]));
    assert_eq!(trailers["grpc-status"], "14");
    // Percent-encoded, as gRPC puts messages in headers.
    assert_eq!(trailers["grpc-message"], "went%20away");
}

/// Backend errors map to ESPv2's HTTP statuses with the status as JSON; a unary call
/// answered with no message is the proxy's INTERNAL.
#[tokio::test]
async fn backend_errors_map_to_http_statuses() {
    let (_mirror, proxy, _config) = stack("", |_| {}).await;
    let url = format!("{}/v1/kitchen/e", proxy.url());
    for (code, http) in [
        (3, 400),
        (5, 404),
        (7, 403),
        (8, 429),
        (13, 500),
        (14, 503),
        (16, 401),
        (4, 504),
        (12, 501),
    ] {
        let (status, answer) = send(
            reqwest::Method::GET,
            url.clone(),
            None,
            &[
                ("mirror-status", &code.to_string()),
                ("mirror-message", "why"),
            ],
        )
        .await;
        assert_eq!(
            (status, answer),
            (http, json!({"code": code, "message": "why"})),
            "code {code}"
        );
    }
    let (status, answer) = send(reqwest::Method::GET, url, None, &[("mirror-status", "0")]).await;
    assert_eq!(status, 500);
    assert_eq!(answer["code"], json!(13));
}

/// ESPv2's print options, from the proxy's settings.
#[tokio::test]
async fn print_options_apply() {
    let (_mirror, proxy, _config) = stack("", |settings| {
        settings.transcoding.preserve_proto_field_names = true;
        settings.transcoding.always_print_enums_as_ints = true;
        settings.transcoding.always_print_primitive_fields = true;
    })
    .await;
    let (status, answer) = send(
        reqwest::Method::GET,
        format!("{}/v1/kitchen/o?flavor=sour", proxy.url()),
        None,
        &[],
    )
    .await;
    // Enum names are case-sensitive unless asked otherwise.
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = send(
        reqwest::Method::GET,
        format!("{}/v1/kitchen/o?flavor=SOUR", proxy.url()),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["f_string"], json!("o"));
    assert_eq!(answer["flavor"], json!(2));
    assert_eq!(answer["f_int32"], json!(0), "defaults printed: {answer}");
    assert!(answer.get("fString").is_none());

    let (_mirror, proxy, _config) = stack("", |settings| {
        settings.transcoding.case_insensitive_enum_parsing = true;
    })
    .await;
    let (status, answer) = send(
        reqwest::Method::GET,
        format!("{}/v1/kitchen/o?flavor=sour", proxy.url()),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["flavor"], json!("SOUR"));
    assert!(
        answer.get("fInt32").is_none(),
        "defaults omitted by default"
    );
}
