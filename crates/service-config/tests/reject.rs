//! Every rejection names the offending field's path; every problem of a file is reported.

use std::path::PathBuf;

use service_config::{ConfigError, ConfigErrors, Descriptor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_err(config: &str, descriptors: &[&str]) -> ConfigErrors {
    let descriptors: Vec<PathBuf> = descriptors.iter().map(|d| fixture(d)).collect();
    match service_config::load(&fixture(config), &descriptors) {
        Ok(loaded) => panic!("{config} should be rejected, got {loaded:?}"),
        Err(errors) => errors,
    }
}

/// (problem, config, descriptors, path of the error, text the line must contain)
#[test]
fn each_rejection_names_its_path() {
    let syntax_yaml = fixture("bad/syntax.yaml").display().to_string();
    let syntax_json = fixture("bad/syntax.json").display().to_string();
    let cases: Vec<(&str, &str, Vec<&str>, &str, &str)> = vec![
        (
            "unreadable YAML",
            "bad/syntax.yaml",
            vec!["bookstore.pb"],
            &syntax_yaml,
            "line 5",
        ),
        (
            "unreadable JSON",
            "bad/syntax.json",
            vec![],
            &syntax_json,
            "line 3",
        ),
        (
            "api not in descriptor",
            "bad/unknown_api.yaml",
            vec!["bookstore.pb"],
            "apis[0].name",
            "service \"endpoints.examples.bookstore.Library\" is not defined in the descriptor",
        ),
        (
            "selector matching no method",
            "bad/selector_no_match.yaml",
            vec!["bookstore.proto"],
            "authentication.rules[0].selector",
            "\"endpoints.examples.bookstore.Bookstore.ListShelf\" matches no method",
        ),
        (
            "invalid wildcard",
            "bad/selector_wildcard.yaml",
            vec!["bookstore.pb"],
            "usage.rules[0].selector",
            "invalid selector \"endpoints.examples.bookstore.Bookstore.List*\"",
        ),
        (
            "unknown provider id",
            "bad/unknown_provider.yaml",
            vec!["bookstore.pb"],
            "authentication.rules[0].requirements[0].provider_id",
            "unknown provider id \"google_service_acount\"",
        ),
        (
            "provider without issuer",
            "bad/missing_issuer.yaml",
            vec!["bookstore.pb"],
            "authentication.providers[0].issuer",
            "required field is missing",
        ),
        (
            "malformed jwks_uri",
            "bad/malformed_jwks_uri.yaml",
            vec!["bookstore.pb"],
            "authentication.providers[1].jwks_uri",
            "malformed URL \"ht!tp:/x\"",
        ),
        (
            "duplicate provider id",
            "bad/duplicate_provider.yaml",
            vec!["bookstore.pb"],
            "authentication.providers[1].id",
            "duplicate provider id \"google_service_account\" (first defined at authentication.providers[0].id)",
        ),
        (
            "missing name",
            "bad/missing_name.yaml",
            vec!["bookstore.pb"],
            "name",
            "required field is missing",
        ),
        (
            "YAML without descriptor",
            "api_config.yaml",
            vec![],
            "descriptor",
            "no API descriptor",
        ),
        (
            "JSON without embedded descriptor",
            "bad/no_descriptor.json",
            vec![],
            "descriptor",
            "no API descriptor",
        ),
    ];
    for (problem, config, descriptors, path, text) in cases {
        let errors = load_err(config, &descriptors);
        let lines = errors.to_string();
        assert_eq!(
            errors.len(),
            1,
            "{problem}: exactly one problem expected:\n{lines}"
        );
        let error = errors.iter().next().expect("one error");
        assert_eq!(error.path(), path, "{problem}");
        assert!(
            lines.starts_with(&format!("{path}: ")),
            "{problem}: {lines}"
        );
        assert!(
            lines.contains(text),
            "{problem}: {lines:?} should contain {text:?}"
        );
        assert!(
            !lines.contains('\n'),
            "{problem}: one line per problem: {lines:?}"
        );
    }
}

#[test]
fn all_problems_are_reported_with_paths() {
    let errors = load_err("bad/many_problems.yaml", &["bookstore.pb"]);
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    assert_eq!(
        paths,
        vec![
            "name",
            "apis[0].name",
            "authentication.providers[0].issuer",
            "authentication.providers[0].jwks_uri",
            "authentication.providers[1].id",
            "authentication.providers[1].jwt_locations[0]",
            "authentication.rules[0].selector",
            "authentication.rules[0].requirements[0].provider_id",
            "usage.rules[0].selector",
            "system_parameters.rules[0].parameters[0]",
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert_eq!(text.lines().count(), paths.len(), "{text}");
    for (line, path) in text.lines().zip(&paths) {
        assert!(line.starts_with(&format!("{path}: ")), "{line}");
    }
    assert!(
        text.contains("malformed URL \"ftp://keys.example.com/jwks\""),
        "{text}"
    );
    assert!(
        text.contains("cookie locations are not supported"),
        "{text}"
    );
}

#[test]
fn descriptor_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pb");
    std::fs::write(&garbage, b"\x0a\xff\xff\xff\xff\x0fnot a descriptor").expect("write");
    let broken = dir.path().join("broken.proto");
    std::fs::write(&broken, "syntax = \"proto3\";\nmessage {\n").expect("write");
    let missing = dir.path().join("missing.pb");
    let yaml = fixture("api_config.yaml");

    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "not a FileDescriptorSet",
            garbage.clone(),
            "invalid FileDescriptorSet",
        ),
        (
            "proto that does not compile",
            broken.clone(),
            "cannot compile protos",
        ),
        (
            "missing descriptor file",
            missing.clone(),
            "cannot read file",
        ),
    ];
    for (problem, descriptor, text) in cases {
        let errors = match service_config::load(&yaml, std::slice::from_ref(&descriptor)) {
            Ok(_) => panic!("{problem}: should be rejected"),
            Err(errors) => errors,
        };
        let error = errors.iter().next().expect("an error");
        assert_eq!(errors.len(), 1, "{problem}: {errors}");
        assert_eq!(error.path(), descriptor.display().to_string(), "{problem}");
        assert!(errors.to_string().contains(text), "{problem}: {errors}");
    }

    // An embedded descriptor that is not base64.
    let json = r#"{"name": "x.example.com", "apis": [{"name": "a.B"}],
        "sourceInfo": {"sourceFiles": [{"fileType": "FILE_DESCRIPTOR_SET_PROTO",
                                        "fileContents": "not*base64"}]}}"#;
    let errors = service_config::from_json(json, None).expect_err("bad base64");
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    assert_eq!(
        paths,
        vec!["source_info.source_files[0].file_contents"],
        "{errors}"
    );

    // Bytes handed to the pure constructor.
    let error =
        Descriptor::from_file_descriptor_set(b"\x0a\xff\xff".to_vec()).expect_err("garbage");
    assert_eq!(error.path(), "descriptor");
}

#[test]
fn unreadable_config_file() {
    let missing = fixture("bad/does_not_exist.yaml");
    let errors = service_config::load(&missing, &[fixture("bookstore.pb")]).expect_err("missing");
    let error = errors.iter().next().expect("an error");
    assert_eq!(error.path(), missing.display().to_string());
    assert!(errors.to_string().contains("cannot read file"), "{errors}");
}

#[test]
fn yaml_type_errors_carry_the_field_path() {
    let yaml = "name: x.example.com\napis:\n- name: endpoints.examples.bookstore.Bookstore\n\
                authentication:\n  providers:\n  - id: a\n    issuer: b\n    audiences: [one, two]\n";
    let pb = std::fs::read(fixture("bookstore.pb")).expect("fixture");
    let descriptor = Descriptor::from_file_descriptor_set(pb).expect("descriptor");
    let errors = service_config::from_yaml(yaml, descriptor).expect_err("audiences is a string");
    let text = errors.to_string();
    assert!(
        text.starts_with("service config: invalid YAML: authentication.providers[0].audiences"),
        "{text}"
    );
    assert!(text.contains("line 8"), "{text}");
}

/// The Bookstore with one provider, one auth rule, one usage rule and one API-key parameter:
/// the sections the cases below put a field into.
fn base() -> serde_json::Value {
    serde_json::json!({
        "type": "google.api.Service",
        "name": "bookstore.endpoints.my-project.cloud.goog",
        "apis": [{"name": "endpoints.examples.bookstore.Bookstore"}],
        "authentication": {
            "providers": [{"id": "sa", "issuer": "sa@example.com", "jwt_locations": [{"header": "x-jwt"}]}],
            "rules": [{"selector": "*", "requirements": [{"provider_id": "sa"}]}]
        },
        "usage": {"rules": [{"selector": "*", "allow_unregistered_calls": true}]},
        "system_parameters": {"rules": [{"selector": "*", "parameters": [{"name": "api_key", "http_header": "x-key"}]}]}
    })
}

/// Sets `value` at the `/`-separated `pointer` (creating objects on the way).
fn with(pointer: &str, value: serde_json::Value) -> serde_json::Value {
    let mut doc = base();
    let mut at = &mut doc;
    let parts: Vec<&str> = pointer.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        at = match part.parse::<usize>() {
            Ok(index) => &mut at[index],
            Err(_) if last => {
                at[*part] = value;
                return doc;
            }
            Err(_) => {
                if at.get(*part).is_none() {
                    at[*part] = serde_json::json!({});
                }
                &mut at[*part]
            }
        };
    }
    doc
}

fn descriptor() -> Descriptor {
    let pb = std::fs::read(fixture("bookstore.pb")).expect("fixture");
    Descriptor::from_file_descriptor_set(pb).expect("descriptor")
}

/// Each document rejected through both parsers (JSON is also YAML), with exactly one problem.
fn rejected(problem: &str, doc: &serde_json::Value) -> ConfigError {
    let text = serde_json::to_string_pretty(doc).expect("json");
    let mut found = Vec::new();
    for (form, result) in [
        ("yaml", service_config::from_yaml(&text, descriptor())),
        ("json", service_config::from_json(&text, Some(descriptor()))),
    ] {
        let errors = match result {
            Ok(_) => panic!("{problem} ({form}): should be rejected"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), 1, "{problem} ({form}): {errors}");
        found.push(errors.into_vec().remove(0));
    }
    assert_eq!(found[0].to_string(), found[1].to_string(), "{problem}");
    found.remove(0)
}

/// An unknown field anywhere esprit reads is an error naming its path, with the known name it is
/// closest to. Before, serde skipped it: `requirement:` dropped the JWT requirement of a rule.
#[test]
fn unknown_fields_are_errors_with_their_path_and_a_suggestion() {
    use serde_json::json;
    // (problem, where, value, path, suggestion)
    let cases: Vec<(&str, &str, serde_json::Value, &str, Option<&str>)> = vec![
        (
            "typo in an auth rule",
            "authentication/rules/0/requirement",
            json!([{"provider_id": "sa"}]),
            "authentication.rules[0].requirement",
            Some("requirements"),
        ),
        (
            "an empty misspelled field is still a typo",
            "authentication/rules/0/requirement",
            json!([]),
            "authentication.rules[0].requirement",
            Some("requirements"),
        ),
        (
            "top-level section",
            "authentification",
            json!({"rules": []}),
            "authentification",
            Some("authentication"),
        ),
        (
            "lowerCamel typo keeps its spelling",
            "authentication/providers/0/jwksUrl",
            json!("https://keys.example.com"),
            "authentication.providers[0].jwksUrl",
            Some("jwks_uri"),
        ),
        (
            "usage rule",
            "usage/rules/0/allow_unregistred_calls",
            json!(false),
            "usage.rules[0].allow_unregistred_calls",
            Some("allow_unregistered_calls"),
        ),
        (
            "allowWithoutCredentials (plural)",
            "authentication/rules/0/allowWithoutCredentials",
            json!(true),
            "authentication.rules[0].allowWithoutCredentials",
            Some("allow_without_credential"),
        ),
        (
            "API key parameter",
            "system_parameters/rules/0/parameters/0/http_headr",
            json!("x-key"),
            "system_parameters.rules[0].parameters[0].http_headr",
            Some("http_header"),
        ),
        (
            "token location",
            "authentication/providers/0/jwt_locations/0/prefix",
            json!("Bearer "),
            "authentication.providers[0].jwt_locations[0].prefix",
            None,
        ),
        (
            "api",
            "apis/0/nmae",
            json!("x"),
            "apis[0].nmae",
            Some("name"),
        ),
        (
            "endpoint",
            "endpoints",
            json!([{"name": "bookstore.endpoints.my-project.cloud.goog", "allow_cros": true}]),
            "endpoints[0].allow_cros",
            Some("allow_cors"),
        ),
        (
            "requirement",
            "authentication/rules/0/requirements/0/audience",
            json!("a"),
            "authentication.rules[0].requirements[0].audience",
            Some("audiences"),
        ),
    ];
    for (problem, pointer, value, path, suggestion) in cases {
        let error = rejected(problem, &with(pointer, value));
        assert_eq!(error.path(), path, "{problem}");
        let want = match suggestion {
            Some(name) => format!("{path}: unknown field (did you mean {name:?}?)"),
            None => format!("{path}: unknown field"),
        };
        assert_eq!(error.to_string(), want, "{problem}");
    }
}

/// Sections that would change who may call or how calls are treated, which esprit does not
/// enforce, are refused by default, with their path.
#[test]
fn unenforced_sections_are_refused_with_their_path() {
    use serde_json::json;
    // (where, value, path)
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "quota",
            json!({"limits": [{"name": "r", "metric": "m", "values": {"STANDARD": 10}}]}),
            "quota",
        ),
        (
            "control",
            json!({"environment": "servicecontrol.googleapis.com", "methodPolicies": [{"selector": "*"}]}),
            "control.method_policies",
        ),
        (
            "backend",
            json!({"rules": [{"selector": "*", "deadline": 5.0, "address": "grpc://elsewhere:1"}]}),
            "backend.rules[0].address",
        ),
        (
            "authentication/rules/0/oauth",
            json!({"canonical_scopes": "https://www.googleapis.com/auth/x"}),
            "authentication.rules[0].oauth",
        ),
        (
            "usage/rules/0/skipServiceControl",
            json!(true),
            "usage.rules[0].skip_service_control",
        ),
        (
            "usage/requirements",
            json!(["serviceusage.googleapis.com/tos/cloud"]),
            "usage.requirements",
        ),
        (
            "context",
            json!({"rules": [{"selector": "*", "requested": ["x"]}]}),
            "context",
        ),
        (
            "experimental",
            json!({"authorization": {"provider": "x"}}),
            "experimental",
        ),
        (
            "apis/0/mixins",
            json!([{"name": "google.longrunning.Operations"}]),
            "apis[0].mixins",
        ),
    ];
    for (pointer, value, path) in cases {
        let error = rejected(pointer, &with(pointer, value));
        assert_eq!(error.path(), path, "{pointer}");
        assert!(
            matches!(error, ConfigError::Unenforced { .. }),
            "{pointer}: {error}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{path}: esprit does not enforce this section; remove it, or pass \
                 --allow-unenforced-config to run with it ignored"
            )
        );
    }
}

#[test]
fn typos_come_before_the_problems_they_cause() {
    // The misspelled provider_id leaves the requirement without one.
    let doc = with(
        "authentication/rules/0/requirements",
        serde_json::json!([{"providerID": "sa"}]),
    );
    let errors = service_config::from_yaml(&doc.to_string(), descriptor()).expect_err("typo");
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    assert_eq!(
        paths,
        vec![
            "authentication.rules[0].requirements[0].providerID",
            "authentication.rules[0].requirements[0].provider_id",
        ],
        "{errors}"
    );
    assert!(
        errors.to_string().contains("did you mean \"provider_id\""),
        "{errors}"
    );
}
