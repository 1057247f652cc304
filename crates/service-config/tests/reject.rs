//! Every rejection names the offending field's path; every problem of a file is reported.

use std::path::PathBuf;

use service_config::{ConfigError, ConfigErrors, Descriptor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
