//! HTTP path templates: the grammar of google/api/http.proto, and which binding a request
//! calls (ESP's precedence, verbs, `**`, percent-decoding).

use std::path::PathBuf;

use service_config::{Descriptor, PathTemplate, ServiceConfig};

#[test]
fn every_grammar_feature_parses_and_prints_back() {
    // (template, printed form, variables)
    let cases: &[(&str, &str, &[&str])] = &[
        ("/", "/", &[]),
        ("/v1/shelves", "/v1/shelves", &[]),
        (
            "/v1/{name=shelves/*}/books",
            "/v1/{name=shelves/*}/books",
            &["name"],
        ),
        ("/v1/{a.b.c}", "/v1/{a.b.c}", &["a.b.c"]),
        ("/v1/{a=*}", "/v1/{a}", &["a"]),
        ("/v1/*/x", "/v1/*/x", &[]),
        ("/v1/{path=**}", "/v1/{path=**}", &["path"]),
        ("/v1/**", "/v1/**", &[]),
        ("/v1/x:verb", "/v1/x:verb", &[]),
        (
            "/v1/{name=a/*/b/**}:cancel",
            "/v1/{name=a/*/b/**}:cancel",
            &["name"],
        ),
        (
            "/v1/{shelf}/books/{book}",
            "/v1/{shelf}/books/{book}",
            &["shelf", "book"],
        ),
        ("/v1/{_a1.b_2}", "/v1/{_a1.b_2}", &["_a1.b_2"]),
        // Escapes of unreserved characters are decoded, others upper-cased.
        ("/v1/%7euser/a%2fb", "/v1/~user/a%2Fb", &[]),
        ("/v1/a-b.c_d~e!$&'()+,;=@", "/v1/a-b.c_d~e!$&'()+,;=@", &[]),
        ("/v1/*:do%2dit", "/v1/*:do-it", &[]),
    ];
    for (text, printed, variables) in cases {
        let template =
            PathTemplate::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        assert_eq!(template.to_string(), *printed, "{text:?}");
        assert_eq!(
            template.variables().collect::<Vec<_>>(),
            *variables,
            "{text:?}"
        );
        // The printed form is itself a template with the same meaning.
        assert_eq!(
            PathTemplate::parse(printed).as_ref(),
            Ok(&template),
            "{printed:?}"
        );
    }
    assert_eq!(
        PathTemplate::parse("/v1/x:verb").expect("parses").verb(),
        Some("verb")
    );
}

#[test]
fn each_syntax_error_says_what_and_where() {
    let cases = [
        ("", "a path template must start with '/'"),
        ("v1/shelves", "a path template must start with '/'"),
        (
            "/v1//shelves",
            "unexpected '/' at position 5, expected a segment",
        ),
        (
            "/v1/shelves/",
            "unexpected end of template at position 13, expected a segment",
        ),
        (
            "/v1/{shelf",
            "unexpected end of template at position 11, expected '}'",
        ),
        (
            "/v1/{shelf=}",
            "unexpected '}' at position 12, expected a segment",
        ),
        (
            "/v1/{}",
            "unexpected '}' at position 6, expected a field name",
        ),
        (
            "/v1/{1a}",
            "unexpected '1' at position 6, expected a field name",
        ),
        (
            "/v1/{a.}",
            "unexpected '}' at position 8, expected a field name",
        ),
        ("/v1/{a-b}", "unexpected '-' at position 7, expected '}'"),
        ("/v1/{a={b}}", "variables cannot be nested (position 8)"),
        (
            "/v1/shel ves",
            "unexpected ' ' at position 9, expected '/', ':' or the end of the template",
        ),
        (
            "/v1/a*b",
            "unexpected '*' at position 6, expected '/', ':' or the end of the template",
        ),
        (
            "/v1/%zz",
            "unexpected '%' at position 5, expected two hex digits after '%'",
        ),
        (
            "/v1/x:",
            "unexpected end of template at position 7, expected a verb after ':'",
        ),
        (
            "/v1/x:a:b",
            "unexpected ':' at position 8, expected '/', ':' or the end of the template",
        ),
        (
            "/v1/x:a/b",
            "unexpected '/' at position 8, expected '/', ':' or the end of the template",
        ),
        ("/:verb", "unexpected ':' at position 2, expected a segment"),
        ("/v1/**/x", "'**' must be the last segment (position 5)"),
        (
            "/v1/{path=**}/x",
            "'**' must be the last segment (position 11)",
        ),
        ("/v1/{a}/{a}", "field \"a\" is bound by two variables"),
        (
            "/v1/{a.b}/x/{a.b=*}",
            "field \"a.b\" is bound by two variables",
        ),
        ("/v1/?x", "unexpected '?' at position 5, expected a segment"),
    ];
    for (text, want) in cases {
        match PathTemplate::parse(text) {
            Ok(template) => panic!("{text:?} should be refused, got {template}"),
            Err(error) => assert_eq!(error.to_string(), want, "{text:?}"),
        }
    }
}

fn routing_descriptor() -> Descriptor {
    let proto = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/routing.proto");
    Descriptor::compile_protos(&[proto]).expect("routing.proto compiles")
}

/// A config binding `R<n>` methods of routing.proto: `(method, pattern, template)`, where
/// pattern is `get`, …, or a custom kind.
fn config(bindings: &[(&str, &str, &str)], fully_decode: bool) -> ServiceConfig {
    let mut yaml = String::from(
        "type: google.api.Service\nname: routing.example.com\napis:\n- name: test.routing.Routing\nhttp:\n",
    );
    yaml.push_str(&format!(
        "  fully_decode_reserved_expansion: {fully_decode}\n  rules:\n"
    ));
    for (method, pattern, template) in bindings {
        yaml.push_str(&format!("  - selector: test.routing.Routing.{method}\n"));
        match *pattern {
            "get" | "put" | "post" | "delete" | "patch" => {
                yaml.push_str(&format!("    {pattern}: '{template}'\n"))
            }
            kind => yaml.push_str(&format!(
                "    custom: {{kind: '{kind}', path: '{template}'}}\n"
            )),
        }
    }
    service_config::from_yaml(&yaml, routing_descriptor())
        .unwrap_or_else(|errors| panic!("should load:\n{errors}\n{yaml}"))
}

/// (HTTP method, path) → `None`, or the method short name and variables.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<(&'a str, &'a [(&'a str, &'a str)])>,
);

fn check_cases(config: &ServiceConfig, cases: &[Case<'_>]) {
    for (method, path, want) in cases {
        let got = config.http_route(method, path).map(|found| {
            let name = found.method.descriptor.name().to_owned();
            (name, found.variables)
        });
        let want = want.map(|(name, vars)| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            (name.to_owned(), vars)
        });
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn requests_route_with_esp_precedence_verbs_and_decoding() {
    let config = config(
        &[
            ("R1", "get", "/v1/shelves/{shelf}"),
            ("R2", "get", "/v1/shelves/special"),
            ("R3", "get", "/v1/{path=**}"),
            ("R4", "get", "/v1/*/x"),
            ("R5", "get", "/v2/{a}/b/c"),
            ("R6", "get", "/v2/lit/{b}"),
            ("R7", "post", "/v3/{name=ops/*}:cancel"),
            ("R8", "get", "/v3/{name=ops/*}"),
            ("R9", "post", "/v4/{name=a/*/b/**}:run"),
            ("R10", "*", "/any/{name}"),
            ("R11", "HEAD", "/any/{name}"),
            ("R12", "get", "/"),
        ],
        false,
    );
    let cases: &[Case<'_>] = &[
        // A literal beats `*`, which beats `**`.
        ("GET", "/v1/shelves/special", Some(("R2", &[]))),
        ("GET", "/v1/shelves/7", Some(("R1", &[("shelf", "7")]))),
        ("GET", "/v1/q/x", Some(("R4", &[]))),
        ("GET", "/v1/shelves", Some(("R3", &[("path", "shelves")]))),
        ("GET", "/v1/a/b/c", Some(("R3", &[("path", "a/b/c")]))),
        (
            "GET",
            "/v1/shelves/7/x",
            Some(("R3", &[("path", "shelves/7/x")])),
        ),
        // `**` matches zero segments.
        ("GET", "/v1", Some(("R3", &[("path", "")]))),
        // A literal branch that fails further on falls back to `*`.
        ("GET", "/v2/lit/b/c", Some(("R5", &[("a", "lit")]))),
        ("GET", "/v2/lit/q", Some(("R6", &[("b", "q")]))),
        // The HTTP method must match (exactly: methods are case-sensitive).
        ("POST", "/v1/shelves/7", None),
        ("get", "/v1/shelves/7", None),
        ("GET", "/v9/x", None),
        ("GET", "v1/shelves/7", None),
        ("GET", "", None),
        // Verbs: matched exactly, and a verb no template declares stays part of the segment.
        (
            "POST",
            "/v3/ops/1:cancel",
            Some(("R7", &[("name", "ops/1")])),
        ),
        ("GET", "/v3/ops/1:cancel", None),
        ("POST", "/v3/ops/1:Cancel", None),
        ("GET", "/v3/ops/1", Some(("R8", &[("name", "ops/1")]))),
        ("GET", "/v3/ops/a:b", Some(("R8", &[("name", "ops/a:b")]))),
        ("POST", "/v3/ops/1", None),
        (
            "POST",
            "/v3/ops/1:%63ancel",
            Some(("R7", &[("name", "ops/1")])),
        ),
        // An encoded ':' is data, not the verb separator.
        ("POST", "/v3/ops/1%3Acancel", None),
        (
            "POST",
            "/v4/a/x/b/c/d:run",
            Some(("R9", &[("name", "a/x/b/c/d")])),
        ),
        ("POST", "/v4/a/x/b:run", Some(("R9", &[("name", "a/x/b")]))),
        ("POST", "/v4/a/x/c:run", None),
        // Custom kinds: an exact method first, then `*` (any method).
        ("HEAD", "/any/x", Some(("R11", &[("name", "x")]))),
        ("GET", "/any/x", Some(("R10", &[("name", "x")]))),
        ("OPTIONS", "/any/x", Some(("R10", &[("name", "x")]))),
        ("GET", "/", Some(("R12", &[]))),
        // Trailing slashes are ignored (ESP); an empty inner segment matches `*` with "".
        ("GET", "/v1/shelves/7/", Some(("R1", &[("shelf", "7")]))),
        ("GET", "/v1/shelves/7//", Some(("R1", &[("shelf", "7")]))),
        ("GET", "/v1//x", Some(("R4", &[]))),
        (
            "GET",
            "/v1/shelves//x",
            Some(("R3", &[("path", "shelves//x")])),
        ),
        // Literals compare after decoding unreserved characters, never reserved ones.
        ("GET", "/v1/%73helves/speci%61l", Some(("R2", &[]))),
        (
            "GET",
            "/v1/shelves%2Fspecial",
            Some(("R3", &[("path", "shelves%2Fspecial")])),
        ),
        // A single-segment variable decodes everything.
        (
            "GET",
            "/v1/shelves/a%2Fb%20c%3A%25",
            Some(("R1", &[("shelf", "a/b c:%")])),
        ),
        (
            "GET",
            "/v1/shelves/%C3%A9t%c3%a9",
            Some(("R1", &[("shelf", "été")])),
        ),
        // A multi-segment variable keeps reserved characters encoded.
        (
            "GET",
            "/v1/x%2Fy/z%20w%3A%41%3f",
            Some(("R3", &[("path", "x%2Fy/z w%3AA%3f")])),
        ),
        // `**` bound over one segment is still multi-segment.
        ("GET", "/v1/a%3Ab", Some(("R3", &[("path", "a%3Ab")]))),
        // Malformed escapes are kept as they are; bytes that are not UTF-8 match nothing.
        ("GET", "/v1/shelves/50%", Some(("R1", &[("shelf", "50%")]))),
        ("GET", "/v1/shelves/%zz", Some(("R1", &[("shelf", "%zz")]))),
        ("GET", "/v1/shelves/%FF", None),
    ];
    check_cases(&config, cases);
}

#[test]
fn fully_decode_reserved_expansion_keeps_only_slashes_encoded() {
    let config = config(
        &[("R1", "get", "/v1/{path=**}"), ("R2", "get", "/v2/{name}")],
        true,
    );
    check_cases(
        &config,
        &[
            (
                "GET",
                "/v1/x%2Fy/z%20w%3A%41%3f",
                Some(("R1", &[("path", "x%2Fy/z w:A?")])),
            ),
            // Single-segment variables decode everything either way.
            ("GET", "/v2/a%2Fb", Some(("R2", &[("name", "a/b")]))),
        ],
    );
}

#[test]
fn routes_list_every_binding_and_matches_say_which() {
    let config = config(&[("R1", "get", "/v1/{name}")], false);
    let routes: Vec<String> = config
        .http_routes()
        .map(|(method, binding)| format!("{} {binding}", method.descriptor.name()))
        .collect();
    assert_eq!(
        routes,
        vec![
            "R1 GET /v1/{name}",
            "Annotated GET /v1/annotated/{name}",
            "Annotated POST /v1/annotated body=*",
            "Annotated HEAD /v1/annotated/{name} response_body=inner",
        ]
    );
    let found = config
        .http_route("HEAD", "/v1/annotated/x")
        .expect("HEAD binding");
    assert_eq!(found.method.descriptor.name(), "Annotated");
    assert_eq!(found.binding.method, "HEAD");
    assert_eq!(found.binding.response_body.as_deref(), Some("inner"));
    assert_eq!(found.variables, vec![("name".to_owned(), "x".to_owned())]);
}
