//! Every accepted input form loads into the same model.

use std::path::PathBuf;

use prost_reflect::Value;
use service_config::{
    ApiKeyLocation, ApiKeyRequirement, Audience, Descriptor, ExpClaim, JwtLocation, OnMissing,
    ServiceConfig,
};

const SERVICE_NAME: &str = "bookstore.endpoints.my-project.cloud.goog";
const EMAIL: &str = "bookstore-client@my-project.iam.gserviceaccount.com";
const METHODS: [&str; 8] = [
    "ListShelves",
    "CreateShelf",
    "GetShelf",
    "DeleteShelf",
    "ListBooks",
    "CreateBook",
    "GetBook",
    "DeleteBook",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(config: &str, descriptors: &[&str]) -> ServiceConfig {
    let descriptors: Vec<PathBuf> = descriptors.iter().map(|d| fixture(d)).collect();
    service_config::load(&fixture(config), &descriptors)
        .unwrap_or_else(|errors| panic!("{config} should load:\n{errors}"))
}

/// The model api_config_auth.yaml describes, whatever form it came in.
fn assert_auth_model(config: &ServiceConfig) {
    assert_eq!(config.name(), SERVICE_NAME);
    assert_eq!(config.title(), Some("Bookstore gRPC API"));
    assert_eq!(config.id().as_str().len(), 16);
    assert!(config.id().as_str().chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(config.apis().len(), 1);
    assert_eq!(
        config.apis()[0].name,
        "endpoints.examples.bookstore.Bookstore"
    );

    let [provider] = config.providers() else {
        panic!("one provider expected: {:?}", config.providers());
    };
    assert_eq!(provider.id.as_str(), "google_service_account");
    assert_eq!(provider.issuer.as_str(), EMAIL);
    assert_eq!(
        provider.jwks_uri.as_ref().map(|u| u.as_str()),
        Some(format!("https://www.googleapis.com/robot/v1/metadata/x509/{EMAIL}").as_str())
    );
    assert!(provider.audiences.is_empty());
    assert_eq!(provider.jwt_locations, JwtLocation::defaults());
    assert_eq!(provider.exp, ExpClaim::Required);

    let selectors: Vec<&str> = config
        .methods()
        .iter()
        .map(|m| m.selector.as_str())
        .collect();
    let want: Vec<String> = METHODS
        .iter()
        .map(|m| format!("endpoints.examples.bookstore.Bookstore.{m}"))
        .collect();
    assert_eq!(selectors, want);

    for name in METHODS {
        let path = format!("/endpoints.examples.bookstore.Bookstore/{name}");
        let method = config
            .method_by_path(&path)
            .unwrap_or_else(|| panic!("{path} should be a method"));
        assert_eq!(method.grpc_path, path);
        assert_eq!(
            config
                .method_by_selector(method.selector.as_str())
                .map(|m| &m.grpc_path),
            Some(&path)
        );
        assert!(!method.client_streaming && !method.server_streaming);
        let auth = method
            .auth
            .as_ref()
            .expect("selector * requires a JWT everywhere");
        assert_eq!(auth.on_missing, OnMissing::Reject);
        assert_eq!(auth.requirements.len(), 1);
        assert_eq!(
            auth.requirements[0].provider_id.as_str(),
            "google_service_account"
        );
        // ESPv2: no audiences anywhere => the service name.
        assert_eq!(
            auth.requirements[0].audiences,
            vec![Audience::new(SERVICE_NAME)]
        );
        let want_key = if name == "ListShelves" {
            ApiKeyRequirement::NotRequired
        } else {
            ApiKeyRequirement::Required
        };
        assert_eq!(method.api_key, want_key, "{name}");
        assert_eq!(method.api_key_locations, ApiKeyLocation::defaults());
        assert_eq!(method.descriptor.name(), name);
    }
    assert!(
        config
            .method_by_path("/endpoints.examples.bookstore.Bookstore/Nope")
            .is_none()
    );
    assert!(
        config
            .method_by_path("/grpc.health.v1.Health/Check")
            .is_none()
    );
    assert!(
        config
            .method_by_selector("endpoints.examples.bookstore.Bookstore")
            .is_none()
    );
}

#[test]
fn yaml_with_proto_sources() {
    assert_auth_model(&load("api_config_auth.yaml", &["bookstore.proto"]));
}

#[test]
fn yaml_with_protoc_descriptor_set() {
    assert_auth_model(&load("api_config_auth.yaml", &["bookstore.pb"]));
}

#[test]
fn expanded_json_with_embedded_descriptor() {
    assert_auth_model(&load("service.json", &[]));
}

#[test]
fn expanded_json_with_explicit_descriptor() {
    assert_auth_model(&load("service.json", &["bookstore.proto"]));
}

/// Converts every lowerCamel object key to snake_case (`@type` and values untouched).
fn to_snake_case(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(key, value)| {
                let mut snake = String::new();
                for c in key.chars() {
                    if c.is_ascii_uppercase() {
                        snake.push('_');
                        snake.push(c.to_ascii_lowercase());
                    } else {
                        snake.push(c);
                    }
                }
                (snake, to_snake_case(value))
            })
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(to_snake_case).collect(),
        other => other,
    }
}

#[test]
fn expanded_json_with_snake_case_names() {
    let text = std::fs::read_to_string(fixture("service.json")).expect("fixture");
    let snake = to_snake_case(serde_json::from_str(&text).expect("json"));
    let snake_text = serde_json::to_string_pretty(&snake).expect("json");
    assert!(snake_text.contains("\"jwks_uri\"") && snake_text.contains("\"source_files\""));
    let config = service_config::from_json(&snake_text, None)
        .unwrap_or_else(|errors| panic!("snake_case JSON should load:\n{errors}"));
    assert_auth_model(&config);
}

#[test]
fn pure_constructors_match_load() {
    let yaml = std::fs::read_to_string(fixture("api_config_auth.yaml")).expect("fixture");
    let pb = std::fs::read(fixture("bookstore.pb")).expect("fixture");
    let descriptor = Descriptor::from_file_descriptor_set(pb).expect("descriptor");
    let from_text = service_config::from_yaml(&yaml, descriptor).expect("valid");
    assert_auth_model(&from_text);
    // Same text and descriptor bytes, same id.
    assert_eq!(
        from_text.id(),
        load("api_config_auth.yaml", &["bookstore.pb"]).id()
    );
    // Different text, different id.
    assert_ne!(
        from_text.id(),
        load("api_config.yaml", &["bookstore.pb"]).id()
    );
}

#[test]
fn tutorial_config_without_auth() {
    let config = load("api_config.yaml", &["bookstore.pb"]);
    assert!(config.providers().is_empty());
    for method in config.methods() {
        assert_eq!(method.auth, None, "{}", method.selector);
    }
    let list = config
        .method_by_selector("endpoints.examples.bookstore.Bookstore.ListShelves")
        .expect("method");
    assert_eq!(list.api_key, ApiKeyRequirement::NotRequired);
}

/// DEPENDENCIES.md: descriptors must be decoded without a prost_types round trip, or the
/// `google.api.http` options vanish. Check them in every form.
#[test]
fn http_annotations_survive_every_form() {
    for (config, descriptors) in [
        ("api_config.yaml", vec!["bookstore.pb"]),
        ("api_config.yaml", vec!["bookstore.proto"]),
        ("service.json", vec![]),
    ] {
        let config = load(config, &descriptors);
        let pool = config.descriptor_pool();
        let http = pool
            .get_extension_by_name("google.api.http")
            .expect("google.api.http extension in pool");
        let method = &config
            .method_by_selector("endpoints.examples.bookstore.Bookstore.GetShelf")
            .expect("method")
            .descriptor;
        let options = method.options();
        let rule = options.get_extension(&http);
        let Value::Message(rule) = rule.as_ref() else {
            panic!("http rule should be a message: {rule:?}");
        };
        let get = rule.get_field_by_name("get").expect("get field");
        assert_eq!(get.as_str(), Some("/v1/shelves/{shelf}"), "{descriptors:?}");
    }
}

#[test]
fn protos_importing_google_api_directly_and_streaming_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proto = dir.path().join("chat.proto");
    std::fs::write(
        &proto,
        r#"syntax = "proto3";
package demo.chat;
import "google/api/http.proto";
import "google/api/annotations.proto";
import "google/protobuf/empty.proto";
message Line { string text = 1; google.api.HttpRule rule = 2; }
service Chat {
  rpc Say(Line) returns (google.protobuf.Empty) { option (google.api.http) = { post: "/say" body: "*" }; }
  rpc Upload(stream Line) returns (google.protobuf.Empty);
  rpc Watch(google.protobuf.Empty) returns (stream Line);
  rpc Talk(stream Line) returns (stream Line);
}
"#,
    )
    .expect("write proto");
    let yaml = "type: google.api.Service\nname: chat.example.com\napis:\n- name: demo.chat.Chat\n";
    let descriptor = Descriptor::compile_protos(&[&proto]).expect("compiles");
    let config = service_config::from_yaml(yaml, descriptor).expect("valid");
    let flags: Vec<(&str, bool, bool)> = config
        .methods()
        .iter()
        .map(|m| (m.grpc_path.as_str(), m.client_streaming, m.server_streaming))
        .collect();
    assert_eq!(
        flags,
        vec![
            ("/demo.chat.Chat/Say", false, false),
            ("/demo.chat.Chat/Upload", true, false),
            ("/demo.chat.Chat/Watch", false, true),
            ("/demo.chat.Chat/Talk", true, true),
        ]
    );
}

#[test]
fn proto_and_descriptor_set_files_merge_into_one_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proto = dir.path().join("extra.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\npackage demo.extra;\nimport \"google/protobuf/empty.proto\";\n\
         service Extra { rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty); }\n",
    )
    .expect("write proto");
    let yaml_path = dir.path().join("service.yaml");
    std::fs::write(
        &yaml_path,
        "type: google.api.Service\nname: two.example.com\napis:\n\
         - name: endpoints.examples.bookstore.Bookstore\n- name: demo.extra.Extra\n",
    )
    .expect("write yaml");
    let config = service_config::load(&yaml_path, &[fixture("bookstore.pb"), proto])
        .unwrap_or_else(|errors| panic!("should load:\n{errors}"));
    assert_eq!(config.methods().len(), 9);
    assert!(config.method_by_path("/demo.extra.Extra/Ping").is_some());
}

/// The server (examples/bookstore) and these fixtures must describe the same API.
#[test]
fn bookstore_proto_matches_the_example_server() {
    let ours = std::fs::read_to_string(fixture("bookstore.proto")).expect("fixture");
    let theirs_path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../examples/bookstore/proto/bookstore.proto");
    let theirs = std::fs::read_to_string(&theirs_path).expect("examples/bookstore proto");
    assert_eq!(ours, theirs);
}

/// The sections and fields `gcloud endpoints configs describe --format=json` prints beside
/// the ones esprit reads: descriptive, or asking for nothing. Each is accepted silently.
#[test]
fn descriptive_sections_and_default_values_are_accepted_silently() {
    use serde_json::json;
    let base = || -> serde_json::Value {
        let text = std::fs::read_to_string(fixture("service.json")).expect("fixture");
        serde_json::from_str(&text).expect("json")
    };
    // (top-level key or `a/0/b` pointer, value)
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "documentation",
            json!({"summary": "A bookstore", "rules": [{"selector": "*", "description": "x"}]}),
        ),
        (
            "logging",
            json!({"producerDestinations": [{"monitoredResource": "api", "logs": ["endpoints_log"]}]}),
        ),
        (
            "monitoring",
            json!({"consumerDestinations": [{"monitoredResource": "api", "metrics": ["m"]}]}),
        ),
        (
            "metrics",
            json!([{"name": "serviceruntime.googleapis.com/api/request_count", "metricKind": "DELTA"}]),
        ),
        (
            "monitoredResources",
            json!([{"type": "api", "labels": [{"key": "cloud.googleapis.com/location"}]}]),
        ),
        ("billing", json!({"consumerDestinations": []})),
        (
            "types",
            json!([{"name": "endpoints.examples.bookstore.Shelf", "fields": [{"name": "id"}]}]),
        ),
        (
            "enums",
            json!([{"name": "google.protobuf.Syntax", "enumvalue": [{"name": "SYNTAX_PROTO2"}]}]),
        ),
        ("systemTypes", json!([{"name": "google.protobuf.Empty"}])),
        (
            "customError",
            json!({"types": ["google.foo.v1.CustomError"]}),
        ),
        ("publishing", json!({"methodSettings": []})),
        ("producerProjectId", json!("my-project")),
        ("configVersion", json!(3)),
        ("id", json!("2026-11-30r0")),
        ("apis/0/options", json!([{"name": "java_package"}])),
        ("apis/0/version", json!("v1")),
        (
            "authentication/providers/0/authorizationUrl",
            json!("https://accounts.example.com/auth"),
        ),
        (
            "endpoints",
            json!([{"name": "bookstore.endpoints.my-project.cloud.goog", "target": "1.2.3.4", "aliases": []}]),
        ),
        (
            "usage/producerNotificationChannel",
            json!("projects/p/topics/t"),
        ),
        // esprit's key server (--service-control-url) replaces Service Control.
        (
            "control",
            json!({"environment": "servicecontrol.googleapis.com"}),
        ),
        // The per-method deadline is read by the proxy; the selector names its methods.
        (
            "backend",
            json!({"rules": [{"selector": "*", "deadline": 30.0}]}),
        ),
        // Unenforced sections that ask for nothing.
        ("quota", json!({})),
        ("http", json!({"rules": []})),
        (
            "endpoints",
            json!([{"name": "b.example.com", "allowCors": false}]),
        ),
        ("usage/rules/0/skipServiceControl", json!(false)),
    ];
    for (pointer, value) in cases {
        let mut doc = base();
        let mut at = &mut doc;
        let parts: Vec<&str> = pointer.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            at = match part.parse::<usize>() {
                Ok(index) => &mut at[index],
                Err(_) => &mut at[*part],
            };
        }
        at[parts[parts.len() - 1]] = value;
        let text = serde_json::to_string(&doc).expect("json");
        let config = service_config::from_json(&text, None)
            .unwrap_or_else(|errors| panic!("{pointer}: should load:\n{errors}"));
        assert_auth_model(&config);
        assert!(config.ignored_sections().is_empty(), "{pointer}");
        // The same document through the YAML parser (JSON is YAML), with a descriptor.
        let pb = std::fs::read(fixture("bookstore.pb")).expect("fixture");
        let descriptor = Descriptor::from_file_descriptor_set(pb).expect("descriptor");
        service_config::from_yaml(&text, descriptor)
            .unwrap_or_else(|errors| panic!("{pointer} (yaml): should load:\n{errors}"));
    }
}

/// With `allow_unenforced`, the config loads as if those sections were absent, and lists each.
#[test]
fn unenforced_sections_are_listed_when_allowed() {
    let yaml = std::fs::read_to_string(fixture("api_config_auth.yaml")).expect("fixture");
    let extra = "\
quota:
  limits:
  - name: reads
    metric: read-calls
http:
  rules:
  - selector: endpoints.examples.bookstore.Bookstore.ListShelves
    get: /v1/shelves
context:
  rules:
  - selector: \"*\"
    requested: [x]
control:
  environment: servicecontrol.googleapis.com
";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api_config.yaml");
    std::fs::write(&path, format!("{yaml}{extra}")).expect("write");
    let descriptors = [fixture("bookstore.pb")];

    let refused = service_config::load(&path, &descriptors).expect_err("refused by default");
    let paths: Vec<&str> = refused.iter().map(|e| e.path()).collect();
    assert_eq!(paths, vec!["quota", "context"], "{refused}");

    let options = service_config::LoadOptions::default().allow_unenforced(true);
    let config = service_config::load_with(&path, &descriptors, options)
        .unwrap_or_else(|errors| panic!("allowed:\n{errors}"));
    assert_auth_model(&config);
    assert_eq!(config.ignored_sections(), ["quota", "context"]);
    // Loaded strictly, the unmodified fixture has nothing to ignore.
    assert!(
        load("api_config_auth.yaml", &["bookstore.pb"])
            .ignored_sections()
            .is_empty()
    );
}

/// `endpoints[].allow_cors` is read (ESP: CORS preflights go to the backend), in both spellings;
/// its neighbours stay descriptive and a typo stays an error.
#[test]
fn allow_cors_is_read() {
    let base = std::fs::read_to_string(fixture("api_config_auth.yaml")).expect("fixture");
    let pb = || {
        Descriptor::from_file_descriptor_set(std::fs::read(fixture("bookstore.pb")).expect("pb"))
            .expect("descriptor")
    };
    let cases = [
        ("", false),
        (
            "endpoints:\n- name: b.example.com\n  allow_cors: false\n",
            false,
        ),
        (
            "endpoints:\n- name: b.example.com\n  allow_cors: true\n",
            true,
        ),
        (
            "endpoints:\n- name: b.example.com\n- name: c.example.com\n  allowCors: true\n  target: 1.2.3.4\n",
            true,
        ),
    ];
    for (extra, want) in cases {
        let config = service_config::from_yaml(&format!("{base}{extra}"), pb())
            .unwrap_or_else(|errors| panic!("{extra}: {errors}"));
        assert_eq!(config.allow_cors(), want, "{extra}");
        assert!(config.ignored_sections().is_empty(), "{extra}");
    }
    let typo = service_config::from_yaml(
        &format!("{base}endpoints:\n- name: b.example.com\n  allow_cros: true\n"),
        pb(),
    )
    .expect_err("a typo");
    assert!(
        typo.to_string().contains("did you mean \"allow_cors\""),
        "{typo}"
    );
}
