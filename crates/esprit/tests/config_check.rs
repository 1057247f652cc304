//! `esprit config check` run as a process on the service-config fixtures.

use std::path::PathBuf;
use std::process::Output;

fn fixture(name: &str) -> String {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../service-config/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn check(config: &str, descriptors: &[&str]) -> Output {
    let mut command = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"));
    command.args(["config", "check", "--service-config", &fixture(config)]);
    for descriptor in descriptors {
        command.args(["--descriptor", &fixture(descriptor)]);
    }
    command.output().expect("run esprit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

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

/// The table row of `method`, split on runs of two or more spaces.
fn row<'a>(stdout: &'a str, method: &str) -> Vec<&'a str> {
    let selector = format!("endpoints.examples.bookstore.Bookstore.{method} ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&selector))
        .unwrap_or_else(|| panic!("no row for {method}:\n{stdout}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The rows of the HTTP ROUTE table, split on runs of two or more spaces.
fn routes(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("HTTP ROUTE "))
        .skip(1)
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn route_row(route: &str, method: &str) -> Vec<String> {
    vec![
        route.to_owned(),
        format!("endpoints.examples.bookstore.Bookstore.{method}"),
    ]
}

#[test]
fn valid_configs_print_every_method() {
    let locations = "[in: header Authorization prefix \"Bearer \", header X-Goog-Iap-Jwt-Assertion, query access_token]";
    let jwt = format!(
        "google_service_account [aud: bookstore.endpoints.my-project.cloud.goog] {locations}"
    );
    let keys = "required (query key, query api_key, header x-api-key)";
    // (config, descriptors, JWT cell, ALLOW WITHOUT CREDENTIAL cell)
    let cases: Vec<(&str, Vec<&str>, &str, &str)> = vec![
        ("api_config_auth.yaml", vec!["bookstore.proto"], &jwt, "no"),
        ("api_config_auth.yaml", vec!["bookstore.pb"], &jwt, "no"),
        ("service.json", vec![], &jwt, "no"),
        ("api_config.yaml", vec!["bookstore.pb"], "none", "-"),
    ];
    for (config, descriptors, want_jwt, want_allow) in cases {
        let output = check(config, &descriptors);
        let stdout = text(&output.stdout);
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{config}: {stderr}");
        assert_eq!(stderr, "", "{config}");
        assert!(
            stdout.starts_with("service:   bookstore.endpoints.my-project.cloud.goog\n"),
            "{config}:\n{stdout}"
        );
        let id = stdout
            .lines()
            .find_map(|l| l.strip_prefix("config id: "))
            .unwrap_or_else(|| panic!("{config}: no config id:\n{stdout}"));
        assert_eq!(id.len(), 16, "{config}: {id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(stdout.contains("methods:   8\n"), "{config}:\n{stdout}");
        for method in METHODS {
            let cells = row(&stdout, method);
            let want_key = if method == "ListShelves" {
                "not required"
            } else {
                keys
            };
            assert_eq!(
                cells,
                vec![
                    format!("endpoints.examples.bookstore.Bookstore.{method}").as_str(),
                    format!("/endpoints.examples.bookstore.Bookstore/{method}").as_str(),
                    want_key,
                    want_allow,
                    want_jwt,
                ],
                "{config}: {method}"
            );
        }
    }
    // The HTTP routes of the Bookstore's google.api.http options, in method order.
    let want_routes = [
        ("GET /v1/shelves", "ListShelves"),
        ("POST /v1/shelves body=shelf", "CreateShelf"),
        ("GET /v1/shelves/{shelf}", "GetShelf"),
        ("DELETE /v1/shelves/{shelf}", "DeleteShelf"),
        ("GET /v1/shelves/{shelf}/books", "ListBooks"),
        ("POST /v1/shelves/{shelf}/books body=book", "CreateBook"),
        ("GET /v1/shelves/{shelf}/books/{book}", "GetBook"),
        ("DELETE /v1/shelves/{shelf}/books/{book}", "DeleteBook"),
    ];
    for config in ["api_config.yaml", "service.json"] {
        let descriptors: &[&str] = if config == "service.json" {
            &[]
        } else {
            &["bookstore.pb"]
        };
        let stdout = text(&check(config, descriptors).stdout);
        assert_eq!(
            routes(&stdout),
            want_routes.map(|(r, m)| route_row(r, m)),
            "{stdout}"
        );
    }
    let auth = text(&check("api_config_auth.yaml", &["bookstore.pb"]).stdout);
    assert!(auth.contains(
        "provider:  google_service_account issuer=bookstore-client@my-project.iam.gserviceaccount.com \
         keys=https://www.googleapis.com/robot/v1/metadata/x509/bookstore-client@my-project.iam.gserviceaccount.com\n"
    ), "{auth}");
}

/// `x_esprit_allowed_callers` is shown on the requirement that lists it (domain lowercased).
#[test]
fn listed_callers_are_printed_with_their_requirement() {
    let auth = std::fs::read_to_string(fixture("api_config_auth.yaml")).expect("fixture");
    let listed = auth.replace(
        "      - provider_id: google_service_account\n",
        "      - provider_id: google_service_account\n        x_esprit_allowed_callers: \
         [bookstore-client@My-Project.iam.gserviceaccount.com]\n",
    );
    assert_ne!(listed, auth);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callers.yaml");
    std::fs::write(&path, listed).expect("write config");
    let output = testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
        .args(["config", "check", "--service-config"])
        .arg(&path)
        .args(["--descriptor", &fixture("bookstore.pb")])
        .output()
        .expect("run esprit");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let cells = row(&stdout, "GetShelf");
    assert!(
        cells[4].ends_with(" [callers: bookstore-client@my-project.iam.gserviceaccount.com]"),
        "{cells:?}"
    );
}

#[test]
fn invalid_configs_print_one_line_per_problem_and_exit_1() {
    let syntax = format!("{}: invalid YAML: ", fixture("bad/syntax.yaml"));
    // (config, descriptors, the start of each stderr line)
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "bad/many_problems.yaml",
            vec!["bookstore.pb"],
            vec![
                "name: required field is missing",
                "apis[0].name: service \"endpoints.examples.bookstore.Library\" is not defined",
                "authentication.providers[0].issuer: required field is missing",
                "authentication.providers[0].jwks_uri: malformed URL \"ftp://keys.example.com/jwks\"",
                "authentication.providers[1].id: duplicate provider id \"a\"",
                "authentication.providers[1].jwt_locations[0]: cookie locations are not supported",
                "authentication.rules[0].selector: invalid selector \"foo.*.bar\"",
                "authentication.rules[0].requirements[0].provider_id: unknown provider id \"b\"",
                "usage.rules[0].selector: required field is missing",
                "system_parameters.rules[0].parameters[0]: set http_header or url_query_parameter",
            ],
        ),
        (
            "bad/malformed_jwks_uri.yaml",
            vec!["bookstore.proto"],
            vec!["authentication.providers[1].jwks_uri: malformed URL \"ht!tp:/x\""],
        ),
        (
            "api_config.yaml",
            vec![],
            vec!["descriptor: no API descriptor"],
        ),
        (
            "bad/syntax.yaml",
            vec!["bookstore.pb"],
            vec![syntax.as_str()],
        ),
    ];
    for (config, descriptors, want) in cases {
        let output = check(config, &descriptors);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{config}: {stderr}");
        assert_eq!(text(&output.stdout), "", "{config}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), want.len(), "{config}:\n{stderr}");
        for (line, prefix) in lines.iter().zip(&want) {
            assert!(
                line.starts_with(prefix),
                "{config}: {line:?} should start with {prefix:?}"
            );
        }
    }
}

/// Writes `text` as a config next to nothing else and runs `config check` on it with the
/// fixtures' descriptor.
fn check_text(text: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("api_config.yaml");
    std::fs::write(&config, text).expect("write config");
    testkit::cli::command(env!("CARGO_BIN_EXE_esprit"))
        .args(["config", "check", "--service-config"])
        .arg(&config)
        .args(["--descriptor", &fixture("bookstore.pb")])
        .args(extra)
        .output()
        .expect("run esprit")
}

const AUTH_HEAD: &str = "\
type: google.api.Service
name: bookstore.endpoints.my-project.cloud.goog
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    issuer: bookstore-client@my-project.iam.gserviceaccount.com
  rules:
  - selector: \"*\"
";

/// A typo in an authentication rule used to drop the rule silently (every method open).
#[test]
fn a_misspelled_field_in_an_auth_rule_is_reported_with_its_path() {
    let config = format!(
        "{AUTH_HEAD}    requirement:\n    - provider_id: google_service_account\n\
         usage:\n  rules:\n  - selector: \"*\"\n    allow_unregistered_calls: true\n"
    );
    let out = check_text(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "authentication.rules[0].requirement: unknown field (did you mean \"requirements\"?)\n"
    );
    // --allow-unenforced-config does not let a typo through.
    let out = check_text(&config, &["--allow-unenforced-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("authentication.rules[0].requirement: unknown field"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unenforced_sections_are_problems_unless_allowed_then_listed() {
    let body = format!(
        "{AUTH_HEAD}    requirements:\n    - provider_id: google_service_account\n\
         usage:\n  rules:\n  - selector: \"*\"\n    allow_unregistered_calls: true\n\
         quota:\n  limits:\n  - name: reads\n    metric: read-calls\n\
         context:\n  rules:\n  - selector: \"*\"\n    requested: [x]\n"
    );
    let out = check_text(&body, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let paths: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(paths, vec!["quota", "context"], "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.contains("esprit does not enforce this section")),
        "{stderr}"
    );

    let out = check_text(&body, &["--allow-unenforced-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ignored:   quota (not enforced by esprit)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ignored:   context (not enforced by esprit)\n"),
        "{stdout}"
    );
}

/// `http.rules` replace a method's option; their bindings are listed with body and
/// response_body, and a route bound twice is a problem naming both methods.
#[test]
fn http_rules_are_listed_and_checked() {
    let tutorial = std::fs::read_to_string(fixture("api_config.yaml")).expect("fixture");
    let config = format!(
        "{tutorial}http:\n  rules:\n  - selector: endpoints.examples.bookstore.Bookstore.GetShelf\n\
         \x20   get: /v2/shelves/{{shelf}}\n    response_body: theme\n\
         \x20   additional_bindings:\n    - post: /v2/shelves/{{shelf}}:get\n      body: '*'\n"
    );
    let out = check_text(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows = routes(&stdout);
    assert_eq!(rows.len(), 9, "{stdout}");
    assert_eq!(
        rows[2..4],
        [
            route_row("GET /v2/shelves/{shelf} response_body=theme", "GetShelf"),
            route_row("POST /v2/shelves/{shelf}:get body=*", "GetShelf"),
        ],
        "{stdout}"
    );

    let conflict = format!(
        "{tutorial}http:\n  rules:\n  - selector: endpoints.examples.bookstore.Bookstore.GetShelf\n\
         \x20   get: /v1/shelves\n"
    );
    let out = check_text(&conflict, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "http.rules[0].get: HTTP route GET /v1/shelves is bound to both \
         endpoints.examples.bookstore.Bookstore.ListShelves and \
         endpoints.examples.bookstore.Bookstore.GetShelf\n"
    );
}
