use super::*;

fn key_path(text: &str) -> Vec<Segment> {
    text.split('.')
        .map(|part| match part.parse() {
            Ok(index) => Segment::Index(index),
            Err(_) => Segment::Key(part.to_owned()),
        })
        .collect()
}

#[test]
fn patterns_cover_their_descendants_only() {
    assert!(covers("quota", "quota"));
    assert!(covers("quota", "quota.limits[]"));
    assert!(!covers("quota", "quotas"));
    assert!(covers("endpoints[].name", "endpoints[].name"));
    assert!(is_below("backend.rules[].deadline", "backend"));
    assert!(is_below("backend.rules[].deadline", "backend.rules[]"));
    assert!(!is_below("backend", "backend"));
}

#[test]
fn names_are_normalized_to_snake_case() {
    let path = key_path("authentication.rules.3.allowWithoutCredential");
    assert_eq!(
        normalized(&path),
        "authentication.rules[].allow_without_credential"
    );
    assert_eq!(
        render(&path, true),
        "authentication.rules[3].allow_without_credential"
    );
    assert_eq!(
        render(&path, false),
        "authentication.rules[3].allowWithoutCredential"
    );
}

#[test]
fn suggestions_come_from_read_and_known_unread_fields() {
    assert_eq!(
        suggest("authentication.rules[]", "requirement").as_deref(),
        Some("requirements")
    );
    assert_eq!(
        suggest("authentication.providers[]", "jwksUrl").as_deref(),
        Some("jwks_uri")
    );
    assert_eq!(
        suggest("", "authentification").as_deref(),
        Some("authentication")
    );
    assert_eq!(suggest("", "quotas").as_deref(), Some("quota"));
    assert_eq!(
        suggest("endpoints[]", "allowCors2").as_deref(),
        Some("allow_cors")
    );
    assert_eq!(suggest("authentication.rules[]", "banana"), None);
    assert_eq!(suggest("no.such.parent", "x"), None);
}

#[test]
fn the_probe_reads_serde_field_lists_with_aliases() {
    let fields = fields_of::<raw::AuthRule>();
    assert!(fields.contains(&"requirements"), "{fields:?}");
    assert!(fields.contains(&"allowWithoutCredential"), "{fields:?}");
}

#[test]
fn default_values_ask_for_nothing() {
    for value in [
        serde_json::json!(null),
        serde_json::json!(false),
        serde_json::json!(0),
        serde_json::json!(""),
        serde_json::json!({"limits": [], "metricRules": {}}),
    ] {
        assert!(is_default(&value), "{value}");
    }
    for value in [
        serde_json::json!(true),
        serde_json::json!(1),
        serde_json::json!("x"),
        serde_json::json!({"limits": [{"name": "x"}]}),
    ] {
        assert!(!is_default(&value), "{value}");
    }
}

#[test]
fn sections_skipped_whole_are_looked_into() {
    let tree = serde_json::json!({
        "backend": {"rules": [{"selector": "*", "deadline": 5.0, "address": "grpc://x"}]},
        "endpoints": [{"name": "a", "aliases": ["b"], "target": "1.2.3.4", "allow_cros": true}],
        "control": {"environment": "servicecontrol.googleapis.com"},
        "quota": {},
    });
    let ignored = [
        key_path("backend"),
        key_path("endpoints"),
        key_path("control"),
        key_path("quota"),
    ];
    let findings = classify(&ignored, Some(&tree));
    assert_eq!(findings.unenforced, vec!["backend.rules[0].address"]);
    let unknown: Vec<String> = findings.unknown.iter().map(ToString::to_string).collect();
    assert_eq!(
        unknown,
        vec!["endpoints[0].allow_cros: unknown field (did you mean \"allow_cors\"?)"]
    );
}

/// Every field of `google.api.Service` (google/api/service.proto) is read, descriptive or
/// unenforced: none of them is reported as a typo.
#[test]
fn every_field_of_google_api_service_is_known() {
    const FIELDS: [&str; 29] = [
        "name",
        "title",
        "producer_project_id",
        "id",
        "apis",
        "types",
        "enums",
        "documentation",
        "backend",
        "http",
        "quota",
        "authentication",
        "context",
        "usage",
        "endpoints",
        "control",
        "logs",
        "metrics",
        "monitored_resources",
        "billing",
        "logging",
        "monitoring",
        "system_parameters",
        "source_info",
        "publishing",
        "system_types",
        "config_version",
        "custom_error",
        "experimental",
    ];
    let read = fields_of::<raw::Service>();
    for field in FIELDS {
        if read.contains(&field) {
            continue;
        }
        let tree = serde_json::json!({ field: true });
        let findings = classify(&[key_path(field)], Some(&tree));
        assert!(
            findings.unknown.is_empty(),
            "{field}: {:?}",
            findings.unknown
        );
    }
}

#[test]
fn without_a_tree_sections_are_unenforced_and_typos_unknown() {
    let ignored = [key_path("endpoints"), key_path("quota"), key_path("titel")];
    let findings = classify(&ignored, None);
    assert_eq!(findings.unenforced, vec!["endpoints", "quota"]);
    assert_eq!(findings.unknown.len(), 1);
    assert_eq!(findings.unknown[0].path(), "titel");
}
