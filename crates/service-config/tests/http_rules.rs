//! HTTP rules in a service config: the Bookstore's `google.api.http` options, `http.rules`
//! overriding them, `additional_bindings`, and every validation error with its path.

use std::path::PathBuf;

use service_config::{ConfigErrors, Descriptor, HttpBody, ServiceConfig};

const PKG: &str = "endpoints.examples.bookstore.Bookstore";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn bookstore() -> Descriptor {
    let pb = std::fs::read(fixture("bookstore.pb")).expect("fixture");
    Descriptor::from_file_descriptor_set(pb).expect("descriptor")
}

fn routing() -> Descriptor {
    Descriptor::compile_protos(&[fixture("routing.proto")]).expect("routing.proto compiles")
}

fn tutorial_yaml(extra: &str) -> String {
    let yaml = std::fs::read_to_string(fixture("api_config.yaml")).expect("fixture");
    format!("{yaml}{extra}")
}

fn routes(config: &ServiceConfig) -> Vec<String> {
    config
        .http_routes()
        .map(|(method, binding)| format!("{} {binding}", method.descriptor.name()))
        .collect()
}

/// docs/esp-compatibility.md ("Google's key files and the sample"): the eight bindings of the Bookstore's annotations, read from
/// every descriptor form.
#[test]
fn bookstore_annotations_give_its_eight_bindings() {
    let want = vec![
        "ListShelves GET /v1/shelves",
        "CreateShelf POST /v1/shelves body=shelf",
        "GetShelf GET /v1/shelves/{shelf}",
        "DeleteShelf DELETE /v1/shelves/{shelf}",
        "ListBooks GET /v1/shelves/{shelf}/books",
        "CreateBook POST /v1/shelves/{shelf}/books body=book",
        "GetBook GET /v1/shelves/{shelf}/books/{book}",
        "DeleteBook DELETE /v1/shelves/{shelf}/books/{book}",
    ];
    let yaml = tutorial_yaml("");
    let from_pb = service_config::from_yaml(&yaml, bookstore()).expect("loads");
    assert_eq!(routes(&from_pb), want);
    let proto = Descriptor::compile_protos(&[fixture("bookstore.proto")]).expect("compiles");
    let from_proto = service_config::from_yaml(&yaml, proto).expect("loads");
    assert_eq!(routes(&from_proto), want);
    let json = std::fs::read_to_string(fixture("service.json")).expect("fixture");
    let from_json = service_config::from_json(&json, None).expect("loads");
    assert_eq!(routes(&from_json), want);

    let create = from_pb
        .method_by_selector(&format!("{PKG}.CreateBook"))
        .expect("method");
    assert_eq!(create.http[0].body, HttpBody::Field("book".to_owned()));
    assert_eq!(create.http[0].response_body, None);

    // (method, path) → (RPC, variables)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case<'_>] = &[
        ("GET", "/v1/shelves", "ListShelves", &[]),
        ("POST", "/v1/shelves", "CreateShelf", &[]),
        ("GET", "/v1/shelves/1", "GetShelf", &[("shelf", "1")]),
        ("DELETE", "/v1/shelves/1", "DeleteShelf", &[("shelf", "1")]),
        ("GET", "/v1/shelves/1/books", "ListBooks", &[("shelf", "1")]),
        (
            "POST",
            "/v1/shelves/1/books",
            "CreateBook",
            &[("shelf", "1")],
        ),
        (
            "GET",
            "/v1/shelves/1/books/2",
            "GetBook",
            &[("shelf", "1"), ("book", "2")],
        ),
        (
            "DELETE",
            "/v1/shelves/1/books/2",
            "DeleteBook",
            &[("shelf", "1"), ("book", "2")],
        ),
    ];
    for (method, path, rpc, vars) in cases {
        let found = from_pb
            .http_route(method, path)
            .unwrap_or_else(|| panic!("{method} {path}: no route"));
        assert_eq!(found.method.selector.as_str(), format!("{PKG}.{rpc}"));
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(found.variables, vars, "{method} {path}");
    }
    for (method, path) in [
        ("PUT", "/v1/shelves"),
        ("GET", "/v1/books"),
        ("GET", "/endpoints.examples.bookstore.Bookstore/ListShelves"),
    ] {
        assert!(
            from_pb.http_route(method, path).is_none(),
            "{method} {path}"
        );
    }
}

/// ESP: a rule of the service config replaces a method's option; the last matching rule wins,
/// with its additional bindings, in the YAML and the camelCase JSON forms.
#[test]
fn http_rules_replace_annotations_last_match_wins() {
    let yaml = tutorial_yaml(&format!(
        "http:
  rules:
  - selector: {PKG}.GetShelf
    get: /v2/never/{{shelf}}
  - selector: {PKG}.GetShelf
    get: /v2/shelves/{{shelf}}
    response_body: theme
    additional_bindings:
    - get: /v2/shelf/{{shelf}}
    - custom: {{kind: HEAD, path: '/v2/shelves/{{shelf}}'}}
  - selector: {PKG}.CreateShelf
    put: /v2/shelves
    body: '*'
"
    ));
    let config = service_config::from_yaml(&yaml, bookstore())
        .unwrap_or_else(|errors| panic!("should load:\n{errors}"));
    let want = [
        "ListShelves GET /v1/shelves",
        "CreateShelf PUT /v2/shelves body=*",
        "GetShelf GET /v2/shelves/{shelf} response_body=theme",
        "GetShelf GET /v2/shelf/{shelf}",
        "GetShelf HEAD /v2/shelves/{shelf}",
        "DeleteShelf DELETE /v1/shelves/{shelf}",
    ];
    assert_eq!(routes(&config)[..6], want);
    assert!(config.http_route("GET", "/v1/shelves/1").is_none());
    assert!(config.http_route("POST", "/v1/shelves").is_none());
    assert!(config.http_route("GET", "/v2/never/1").is_none());
    for (method, path) in [
        ("GET", "/v2/shelves/1"),
        ("GET", "/v2/shelf/1"),
        ("HEAD", "/v2/shelves/1"),
    ] {
        let found = config.http_route(method, path).expect(path);
        assert_eq!(found.method.selector.as_str(), format!("{PKG}.GetShelf"));
        assert_eq!(found.variables, vec![("shelf".to_owned(), "1".to_owned())]);
    }

    // The expanded JSON form: camelCase names, embedded descriptor.
    let json = std::fs::read_to_string(fixture("service.json")).expect("fixture");
    let mut doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    doc["http"] = serde_json::json!({
        "fullyDecodeReservedExpansion": true,
        "rules": [{
            "selector": format!("{PKG}.ListBooks"),
            "get": "/v2/{shelf}/books",
            "responseBody": "books",
            "additionalBindings": [{"post": "/v2/{shelf}/books:list", "body": "*"}],
        }],
    });
    let config = service_config::from_json(&doc.to_string(), None)
        .unwrap_or_else(|errors| panic!("should load:\n{errors}"));
    let list: Vec<String> = routes(&config)
        .into_iter()
        .filter(|r| r.starts_with("ListBooks "))
        .collect();
    assert_eq!(
        list,
        vec![
            "ListBooks GET /v2/{shelf}/books response_body=books",
            "ListBooks POST /v2/{shelf}/books:list body=*",
        ]
    );
    let found = config.http_route("POST", "/v2/7/books:list").expect("verb");
    assert_eq!(found.binding.body, HttpBody::Whole);
}

fn rejected(yaml: &str, descriptor: Descriptor) -> ConfigErrors {
    match service_config::from_yaml(yaml, descriptor) {
        Ok(_) => panic!("should be rejected:\n{yaml}"),
        Err(errors) => errors,
    }
}

/// Each problem of an `http.rules` entry, with its path and message, on routing.proto.
#[test]
fn each_rule_problem_is_reported_with_its_path() {
    let r1 = "test.routing.Routing.R1";
    // (rule body under `- selector: R1`, path, message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "get: '/v1/{name'",
            "http.rules[0].get",
            "invalid path template \"/v1/{name\": unexpected end of template at position 10, \
             expected '}'",
        ),
        (
            "custom: {kind: HEAD, path: 'v1'}",
            "http.rules[0].custom.path",
            "invalid path template \"v1\": a path template must start with '/'",
        ),
        (
            "body: '*'",
            "http.rules[0]",
            "set one of get, put, post, delete, patch or custom",
        ),
        (
            "get: /v1/x\n    post: /v1/x",
            "http.rules[0]",
            "set exactly one of get, put, post, delete, patch or custom, not both get and post",
        ),
        (
            "patch: /v1/x\n    custom: {kind: HEAD, path: /v1/x}",
            "http.rules[0]",
            "not both patch and custom",
        ),
        (
            "custom: {path: /v1/x}",
            "http.rules[0].custom.kind",
            "required field is missing",
        ),
        (
            "custom: {kind: 'GE T', path: /v1/x}",
            "http.rules[0].custom.kind",
            "\"GE T\" is not an HTTP method name (or \"*\" for any)",
        ),
        (
            "get: '/v1/{nme}'",
            "http.rules[0].get",
            "path variable {nme}: test.routing.Request has no field \"nme\" (did you mean \"name\"?)",
        ),
        (
            "get: '/v1/{tags}'",
            "http.rules[0].get",
            "path variable {tags}: field \"tags\" of test.routing.Request is repeated; a path \
             variable binds one value",
        ),
        (
            "get: '/v1/{labels}'",
            "http.rules[0].get",
            "path variable {labels}: field \"labels\" of test.routing.Request is repeated",
        ),
        (
            "get: '/v1/{inner}'",
            "http.rules[0].get",
            "path variable {inner}: field \"inner\" of test.routing.Request is a message \
             (test.routing.Inner); bind one of its scalar fields, e.g. {inner.<field>}",
        ),
        (
            "get: '/v1/{inner.tags}'",
            "http.rules[0].get",
            "path variable {inner.tags}: field \"inner.tags\" of test.routing.Request is repeated",
        ),
        (
            "get: '/v1/{inner.deep}'",
            "http.rules[0].get",
            "is a message (test.routing.Deep)",
        ),
        (
            "get: '/v1/{name.x}'",
            "http.rules[0].get",
            "path variable {name.x}: field \"name\" of test.routing.Request is not a singular \
             message, so \"name.x\" names nothing",
        ),
        (
            "get: '/v1/{tags.x}'",
            "http.rules[0].get",
            "field \"tags\" of test.routing.Request is not a singular message",
        ),
        (
            "get: '/v1/{inner.nope}'",
            "http.rules[0].get",
            "path variable {inner.nope}: test.routing.Inner has no field \"nope\"",
        ),
        (
            "get: '/v1/{a}/{a=x/*}'",
            "http.rules[0].get",
            "field \"a\" is bound by two variables",
        ),
        (
            "post: '/v1/{name}'\n    body: name",
            "http.rules[0].body",
            "field \"name\" is already bound by the path variable {name}",
        ),
        (
            "post: '/v1/x'\n    body: bdy",
            "http.rules[0].body",
            "test.routing.Request has no field \"bdy\"",
        ),
        (
            "post: '/v1/x'\n    body: inner.nope",
            "http.rules[0].body",
            "test.routing.Inner has no field \"nope\"",
        ),
        (
            "get: '/v1/x'\n    response_body: nam",
            "http.rules[0].response_body",
            "test.routing.Response has no field \"nam\" (did you mean \"name\"?)",
        ),
        (
            "get: /v1/x\n    additional_bindings:\n    - get: /v1/y\n      additional_bindings:\n      - get: /v1/z",
            "http.rules[0].additional_bindings[0].additional_bindings",
            "additional bindings cannot have additional bindings of their own",
        ),
        (
            "get: /v1/x\n    additional_bindings:\n    - selector: test.routing.Routing.R2\n      get: /v1/y",
            "http.rules[0].additional_bindings[0].selector",
            "an additional binding applies to its rule's selector; remove this one",
        ),
        (
            "get: /v1/x\n    additional_bindings:\n    - get: '/v1/{nope}'",
            "http.rules[0].additional_bindings[0].get",
            "path variable {nope}: test.routing.Request has no field \"nope\"",
        ),
        (
            "gett: /v1/x\n    get: /v1/x",
            "http.rules[0].gett",
            "unknown field (did you mean \"get\"?)",
        ),
        (
            "get: /v1/x\n    responseBdy: name",
            "http.rules[0].responseBdy",
            "unknown field (did you mean \"response_body\"?)",
        ),
        (
            "get: /v1/x\n    custom: {kind: HEAD, pth: /v1/x}",
            "http.rules[0].custom.pth",
            "unknown field (did you mean \"path\"?)",
        ),
        (
            "get: /v1/x\n    additional_bindings:\n    - pos: /v1/y",
            "http.rules[0].additional_bindings[0].pos",
            "unknown field (did you mean \"post\"?)",
        ),
    ];
    let base = "type: google.api.Service\nname: routing.example.com\napis:\n- name: test.routing.Routing\n";
    for (rule, path, message) in cases {
        let yaml = format!("{base}http:\n  rules:\n  - selector: {r1}\n    {rule}\n");
        let errors = rejected(&yaml, routing());
        let error = errors
            .iter()
            .find(|e| e.path() == *path)
            .unwrap_or_else(|| panic!("{rule}: no error at {path}:\n{errors}"));
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("{path}: ")) && text.contains(message),
            "{rule}: {text}"
        );
    }

    // Nested paths to scalars and enums are fine, and so is a body whose field a path variable
    // reaches into (AIP-134's `patch: "/v1/{book.name=…}" body: "book"`).
    let fine = [
        "get: '/v1/{inner.deep.n}/{color}/{id}'",
        "patch: '/v1/{payload.id=things/*}'\n    body: payload\n    response_body: inner.deep",
        "custom: {kind: '*', path: '/v1/{name=**}'}",
    ];
    for rule in fine {
        let yaml = format!("{base}http:\n  rules:\n  - selector: {r1}\n    {rule}\n");
        service_config::from_yaml(&yaml, routing())
            .unwrap_or_else(|errors| panic!("{rule}: should load:\n{errors}"));
    }
    // Unknown fields of the section itself are typos too.
    let yaml = format!("{base}http:\n  rule: []\n");
    let errors = rejected(&yaml, routing());
    assert_eq!(
        errors.to_string(),
        "http.rule: unknown field (did you mean \"rules\"?)"
    );
    // A selector that matches nothing, as for every rule kind.
    let yaml =
        format!("{base}http:\n  rules:\n  - selector: test.routing.Routing.R99\n    get: /x\n");
    let errors = rejected(&yaml, routing());
    assert!(
        errors.to_string().starts_with(
            "http.rules[0].selector: selector \"test.routing.Routing.R99\" matches no method"
        ),
        "{errors}"
    );
}

/// Two bindings with the same HTTP method and template (whatever their variables are called)
/// are a conflict naming both methods; the same template under another method is not.
#[test]
fn one_route_bound_twice_is_a_conflict_naming_both() {
    let base = "type: google.api.Service\nname: routing.example.com\napis:\n- name: test.routing.Routing\n";
    let r = |n: u8| format!("test.routing.Routing.R{n}");
    // (rules, path, message)
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!(
                "  - selector: {}\n    get: /v1/x\n  - selector: {}\n    get: /v1/x\n",
                r(1),
                r(2)
            ),
            "http.rules[1].get",
            format!(
                "HTTP route GET /v1/x is bound to both {} and {}",
                r(1),
                r(2)
            ),
        ),
        (
            format!(
                "  - selector: {}\n    get: '/v1/{{a}}'\n  - selector: {}\n    get: '/v1/{{b=*}}'\n",
                r(1),
                r(2)
            ),
            "http.rules[1].get",
            format!(
                "HTTP route GET /v1/{{b}} is bound to both {} and {}",
                r(1),
                r(2)
            ),
        ),
        (
            format!(
                "  - selector: {}\n    post: '/v1/{{name=ops/*}}:run'\n    additional_bindings:\n    - post: '/v1/{{a=ops/*}}:run'\n",
                r(3)
            ),
            "http.rules[0].additional_bindings[0].post",
            format!(
                "HTTP route POST /v1/{{a=ops/*}}:run is bound to both {} and {}",
                r(3),
                r(3)
            ),
        ),
        // Against an annotation: Annotated has GET /v1/annotated/{name}.
        (
            format!("  - selector: {}\n    get: '/v1/annotated/{{id}}'\n", r(4)),
            "test.routing.Routing.Annotated (google.api.http).get",
            format!(
                "HTTP route GET /v1/annotated/{{name}} is bound to both {} and \
                 test.routing.Routing.Annotated",
                r(4)
            ),
        ),
    ];
    for (rules, path, message) in cases {
        let yaml = format!("{base}http:\n  rules:\n{rules}");
        let errors = rejected(&yaml, routing());
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(errors.to_string(), format!("{path}: {message}"), "{rules}");
    }
    // The same template with other methods, or another verb, loads.
    let yaml = format!(
        "{base}http:\n  rules:\n  - selector: {}\n    get: /v1/x\n  - selector: {}\n    post: /v1/x\n  - selector: {}\n    custom: {{kind: '*', path: /v1/x}}\n  - selector: {}\n    get: /v1/x:go\n",
        r(1),
        r(2),
        r(3),
        r(4)
    );
    service_config::from_yaml(&yaml, routing())
        .unwrap_or_else(|errors| panic!("should load:\n{errors}"));
}

/// A bad `google.api.http` option is reported under the method's name (there is no YAML path).
#[test]
fn annotation_problems_name_the_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proto = dir.path().join("bad.proto");
    std::fs::write(
        &proto,
        r#"syntax = "proto3";
package test.bad;
import "google/api/annotations.proto";
message Req { string name = 1; }
service Bad {
  rpc Get(Req) returns (Req) {
    option (google.api.http) = {
      get: "/v1/{nam}"
      additional_bindings { post: "/v1/x" body: "nope" }
      additional_bindings { get: "/v1//x" }
    };
  }
  rpc Other(Req) returns (Req) { option (google.api.http) = { post: "/v1/x" }; }
}
"#,
    )
    .expect("write proto");
    let descriptor = Descriptor::compile_protos(&[&proto]).expect("compiles");
    let yaml = "type: google.api.Service\nname: bad.example.com\napis:\n- name: test.bad.Bad\n";
    let errors = rejected(yaml, descriptor);
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "test.bad.Bad.Get (google.api.http).additional_bindings[1].get: invalid path template \
             \"/v1//x\": unexpected '/' at position 5, expected a segment",
            "test.bad.Bad.Get (google.api.http).get: path variable {nam}: test.bad.Req has no \
             field \"nam\" (did you mean \"name\"?)",
            "test.bad.Bad.Get (google.api.http).additional_bindings[0].body: test.bad.Req has no \
             field \"nope\"",
            "test.bad.Bad.Other (google.api.http).post: HTTP route POST /v1/x is bound to both \
             test.bad.Bad.Get and test.bad.Bad.Other",
        ]
    );
    // A config rule replacing the bad option makes the config valid.
    let fixed =
        format!("{yaml}http:\n  rules:\n  - selector: test.bad.Bad.Get\n    get: '/v1/{{name}}'\n");
    let descriptor = Descriptor::compile_protos(&[&proto]).expect("compiles");
    let config = service_config::from_yaml(&fixed, descriptor)
        .unwrap_or_else(|errors| panic!("should load:\n{errors}"));
    assert_eq!(
        config
            .http_route("GET", "/v1/x")
            .map(|m| m.method.selector.to_string()),
        Some("test.bad.Bad.Get".to_owned())
    );
}
