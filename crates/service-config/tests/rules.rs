//! How rules resolve per method: last match wins, ESP defaults, effective audiences.

use std::path::PathBuf;

use service_config::{
    ApiKeyLocation, ApiKeyRequirement, Audience, Descriptor, ExpClaim, JwtLocation, MethodAuth,
    OnMissing, ServiceConfig,
};

const PKG: &str = "endpoints.examples.bookstore.Bookstore";

fn descriptor() -> Descriptor {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/bookstore.pb");
    Descriptor::from_file_descriptor_set(std::fs::read(path).expect("fixture")).expect("valid")
}

fn config(body: &str) -> ServiceConfig {
    let yaml = format!(
        "type: google.api.Service\nconfig_version: 3\nname: bookstore.example.com\n\
         apis:\n- name: {PKG}\n{body}"
    );
    service_config::from_yaml(&yaml, descriptor())
        .unwrap_or_else(|errors| panic!("should load:\n{errors}\n---\n{yaml}"))
}

fn auth_of<'a>(config: &'a ServiceConfig, method: &str) -> Option<&'a MethodAuth> {
    config
        .method_by_selector(&format!("{PKG}.{method}"))
        .unwrap_or_else(|| panic!("{method}"))
        .auth
        .as_ref()
}

/// Provider ids each method requires; `None` = no JWT check.
fn provider_ids(config: &ServiceConfig, method: &str) -> Option<Vec<String>> {
    auth_of(config, method).map(|auth| {
        auth.requirements
            .iter()
            .map(|r| r.provider_id.as_str().to_owned())
            .collect()
    })
}

const PROVIDERS: &str = "authentication:
  providers:
  - id: a
    issuer: https://a.example.com
  - id: b
    issuer: https://b.example.com
    audiences: b1, b2 ,
";

#[test]
fn authentication_rules_last_match_wins() {
    let a = Some(vec!["a".to_owned()]);
    type Want = Vec<(&'static str, Option<Vec<String>>)>;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "a later specific rule without requirements opens one method",
            format!(
                "  rules:\n  - selector: \"*\"\n    requirements:\n    - provider_id: a\n\
                 \x20 - selector: {PKG}.ListShelves\n"
            ),
            vec![("ListShelves", None), ("GetShelf", a.clone())],
        ),
        (
            "a later catch-all overrides an earlier specific rule",
            format!(
                "  rules:\n  - selector: {PKG}.ListShelves\n\
                 \x20 - selector: \"*\"\n    requirements:\n    - provider_id: a\n"
            ),
            vec![("ListShelves", a.clone()), ("GetShelf", a.clone())],
        ),
        (
            "prefix patterns and lists",
            format!(
                "  rules:\n  - selector: endpoints.examples.bookstore.*\n    requirements:\n    - provider_id: a\n\
                 \x20 - selector: \"{PKG}.GetBook, {PKG}.ListBooks\"\n    requirements:\n    - provider_id: b\n    - provider_id: a\n"
            ),
            vec![
                ("ListShelves", a.clone()),
                ("GetBook", Some(vec!["b".to_owned(), "a".to_owned()])),
                ("ListBooks", Some(vec!["b".to_owned(), "a".to_owned()])),
            ],
        ),
        (
            "no rules: no JWT check",
            String::new(),
            vec![("ListShelves", None), ("DeleteBook", None)],
        ),
    ];
    for (desc, rules, want) in cases {
        let config = config(&format!("{PROVIDERS}{rules}"));
        for (method, ids) in want {
            assert_eq!(provider_ids(&config, method), ids, "{desc}: {method}");
        }
    }
}

#[test]
fn effective_audiences_and_on_missing() {
    let config = config(&format!(
        "{PROVIDERS}  rules:\n  - selector: \"*\"\n    allow_without_credential: true\n    requirements:\n\
         \x20   - provider_id: a\n    - provider_id: b\n    - provider_id: b\n      audiences: r1,r2\n\
         \x20 - selector: {PKG}.GetShelf\n    requirements:\n    - provider_id: a\n      audiences: only\n"
    ));
    let auth = auth_of(&config, "ListShelves").expect("auth");
    assert_eq!(auth.on_missing, OnMissing::Allow);
    let audiences: Vec<Vec<Audience>> = auth
        .requirements
        .iter()
        .map(|r| r.audiences.clone())
        .collect();
    let aud = |list: &[&str]| list.iter().map(|a| Audience::new(*a)).collect::<Vec<_>>();
    assert_eq!(
        audiences,
        vec![
            // Neither the provider nor the requirement sets any: the service name.
            aud(&["bookstore.example.com"]),
            // The provider's comma-separated list, trimmed, empty items dropped.
            aud(&["b1", "b2"]),
            // The requirement's own list overrides the provider's.
            aud(&["r1", "r2"]),
        ]
    );
    let get = auth_of(&config, "GetShelf").expect("auth");
    assert_eq!(get.on_missing, OnMissing::Reject);
    assert_eq!(get.requirements[0].audiences, aud(&["only"]));
    assert_eq!(config.providers()[1].audiences, aud(&["b1", "b2"]));
}

#[test]
fn usage_rules_last_match_wins() {
    let config = config(&format!(
        "usage:\n  rules:\n  - selector: \"*\"\n    allow_unregistered_calls: true\n\
         \x20 - selector: {PKG}.DeleteShelf,{PKG}.DeleteBook\n    allow_unregistered_calls: false\n"
    ));
    for (method, want) in [
        ("ListShelves", ApiKeyRequirement::NotRequired),
        ("CreateBook", ApiKeyRequirement::NotRequired),
        ("DeleteShelf", ApiKeyRequirement::Required),
        ("DeleteBook", ApiKeyRequirement::Required),
    ] {
        let m = config
            .method_by_selector(&format!("{PKG}.{method}"))
            .expect("method");
        assert_eq!(m.api_key, want, "{method}");
    }
}

#[test]
fn api_key_locations_from_system_parameters() {
    let config = config(&format!(
        "system_parameters:\n  rules:\n  - selector: \"*\"\n    parameters:\n\
         \x20   - name: api_key\n      http_header: x-goog-api-key\n      url_query_parameter: apikey\n\
         \x20   - name: api_key\n      url_query_parameter: k\n\
         \x20 - selector: {PKG}.ListShelves\n    parameters:\n    - name: quota_user\n      http_header: x-quota-user\n"
    ));
    let locations = |method: &str| {
        config
            .method_by_selector(&format!("{PKG}.{method}"))
            .expect("method")
            .api_key_locations
            .clone()
    };
    // Query parameters first, then headers (ESPv2's order, like the defaults).
    assert_eq!(
        locations("GetShelf"),
        vec![
            ApiKeyLocation::Query("apikey".to_owned()),
            ApiKeyLocation::Query("k".to_owned()),
            ApiKeyLocation::Header("x-goog-api-key".to_owned()),
        ]
    );
    // The last matching rule sets no api_key parameter: defaults.
    assert_eq!(locations("ListShelves"), ApiKeyLocation::defaults());
    assert_eq!(
        ApiKeyLocation::defaults(),
        vec![
            ApiKeyLocation::Query("key".to_owned()),
            ApiKeyLocation::Query("api_key".to_owned()),
            ApiKeyLocation::Header("x-api-key".to_owned()),
        ]
    );
}

#[test]
fn provider_fields() {
    let config = config(
        "authentication:
  providers:
  - id: custom
    issuer: https://issuer.example.com
    jwt_locations:
    - header: X-Jwt
      value_prefix: 'Token '
    - header: x-other
    - query: jwt
    x_esprit_allow_missing_exp: true
  - id: discovered
    issuer: accounts.example.com
",
    );
    let [custom, discovered] = config.providers() else {
        panic!("two providers");
    };
    assert_eq!(
        custom.jwt_locations,
        vec![
            JwtLocation::Header {
                name: "X-Jwt".to_owned(),
                value_prefix: Some("Token ".to_owned())
            },
            JwtLocation::Header {
                name: "x-other".to_owned(),
                value_prefix: None
            },
            JwtLocation::Query {
                name: "jwt".to_owned()
            },
        ]
    );
    assert_eq!(custom.exp, ExpClaim::Optional);
    // No jwks_uri: left for OpenID discovery by the proxy.
    assert_eq!(discovered.jwks_uri, None);
    assert_eq!(discovered.exp, ExpClaim::Required);
    assert_eq!(
        discovered.jwt_locations,
        vec![
            JwtLocation::Header {
                name: "Authorization".to_owned(),
                value_prefix: Some("Bearer ".to_owned())
            },
            JwtLocation::Header {
                name: "X-Goog-Iap-Jwt-Assertion".to_owned(),
                value_prefix: None
            },
            JwtLocation::Query {
                name: "access_token".to_owned()
            },
        ]
    );
}

#[test]
fn json_accepts_camel_case_extension_field() {
    let json = format!(
        r#"{{"name": "bookstore.example.com", "apis": [{{"name": "{PKG}"}}],
            "authentication": {{"providers": [{{"id": "p", "issuer": "i",
              "jwtLocations": [{{"header": "Authorization", "valuePrefix": "Bearer "}}],
              "xEspritAllowMissingExp": true}}],
              "rules": [{{"selector": "*", "allowWithoutCredential": true,
                          "requirements": [{{"providerId": "p", "audiences": "x"}}]}}]}},
            "usage": {{"rules": [{{"selector": "{PKG}.GetBook", "allowUnregisteredCalls": true}}]}},
            "systemParameters": {{"rules": [{{"selector": "*",
              "parameters": [{{"name": "api_key", "httpHeader": "k"}}]}}]}}}}"#
    );
    let config = service_config::from_json(&json, Some(descriptor()))
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.providers()[0].exp, ExpClaim::Optional);
    let get_book = config
        .method_by_selector(&format!("{PKG}.GetBook"))
        .expect("method");
    let auth = get_book.auth.as_ref().expect("auth");
    assert_eq!(auth.on_missing, OnMissing::Allow);
    assert_eq!(auth.requirements[0].audiences, vec![Audience::new("x")]);
    assert_eq!(get_book.api_key, ApiKeyRequirement::NotRequired);
    assert_eq!(
        get_book.api_key_locations,
        vec![ApiKeyLocation::Header("k".to_owned())]
    );
}

fn deadline_of(config: &ServiceConfig, method: &str) -> Option<std::time::Duration> {
    config
        .method_by_selector(&format!("{PKG}.{method}"))
        .unwrap_or_else(|| panic!("{method}"))
        .backend_deadline
}

#[test]
fn backend_rule_deadlines_last_match_wins_in_milliseconds() {
    use std::time::Duration;
    let config = config(&format!(
        "backend:\n  rules:\n  - selector: \"*\"\n    deadline: 5\n\
         \x20 - selector: {PKG}.ListShelves\n    deadline: 0.0104\n\
         \x20 - selector: {PKG}.GetShelf\n    deadline: 0\n"
    ));
    assert_eq!(
        deadline_of(&config, "GetBook"),
        Some(Duration::from_secs(5))
    );
    // Rounded to the millisecond, as ESPv2 does.
    assert_eq!(
        deadline_of(&config, "ListShelves"),
        Some(Duration::from_millis(10))
    );
    // 0 is "not set" (proto default), and a later rule wins even so.
    assert_eq!(deadline_of(&config, "GetShelf"), None);
    // No backend section: no deadline.
    let plain = self::config("");
    assert_eq!(deadline_of(&plain, "GetBook"), None);
}

#[test]
fn backend_rule_deadlines_out_of_range_are_refused_with_their_path() {
    for bad in ["-1", "1e9", ".nan", ".inf"] {
        let yaml = format!(
            "type: google.api.Service\nname: bookstore.example.com\napis:\n- name: {PKG}\n\
             backend:\n  rules:\n  - selector: \"*\"\n    deadline: {bad}\n"
        );
        let errors = service_config::from_yaml(&yaml, descriptor())
            .expect_err(&format!("deadline {bad} should be refused"));
        let text = errors.to_string();
        assert!(text.contains("backend.rules[0].deadline"), "{bad}: {text}");
    }
}
