#![allow(clippy::unwrap_used)]

use super::*;

fn request(method: Method, pairs: &[(&str, &str)]) -> (Method, HeaderMap) {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    (method, headers)
}

fn preflight(origin: &str) -> (Method, HeaderMap) {
    request(
        Method::OPTIONS,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-grpc-web"),
        ],
    )
}

fn basic(origin: &str) -> CorsPolicy {
    CorsPolicy::new(&CorsSettings {
        allow_origin: origin.to_owned(),
        ..CorsSettings::new(CorsPreset::Basic)
    })
    .unwrap()
}

fn regex(pattern: &str) -> CorsPolicy {
    CorsPolicy::new(&CorsSettings {
        allow_origin_regex: pattern.to_owned(),
        ..CorsSettings::new(CorsPreset::CorsWithRegex)
    })
    .unwrap()
}

/// What the step decided, in a comparable form: "preflight <allow-origin>", "refuse <status>",
/// "backend", "proceed <allow-origin or ->".
fn outcome(
    policy: Option<&CorsPolicy>,
    to_backend: bool,
    (method, headers): &(Method, HeaderMap),
) -> String {
    match step(policy, to_backend, method, headers) {
        Step::End(Preflight::Answer(h)) => format!(
            "preflight {}",
            h["access-control-allow-origin"].to_str().unwrap()
        ),
        Step::End(Preflight::Refuse(rejection)) => {
            format!("refuse {}", rejection.http_status().as_u16())
        }
        Step::End(Preflight::ToBackend) => "backend".to_owned(),
        Step::Proceed(Some(h)) => format!(
            "proceed {}",
            h["access-control-allow-origin"].to_str().unwrap()
        ),
        Step::Proceed(None) => "proceed -".to_owned(),
    }
}

#[test]
fn decisions() {
    let exact = basic("https://app.example");
    let any = basic("*");
    let re = regex(r"https://[a-z]+\.example\.com");
    let post = |origin: &str| request(Method::POST, &[("origin", origin)]);
    type Row<'a> = (
        &'a str,
        Option<&'a CorsPolicy>,
        bool,
        (Method, HeaderMap),
        &'a str,
    );
    let table: &[Row] = &[
        (
            "exact origin, preflight",
            Some(&exact),
            false,
            preflight("https://app.example"),
            "preflight https://app.example",
        ),
        (
            "other origin, preflight",
            Some(&exact),
            false,
            preflight("https://evil.example"),
            "refuse 403",
        ),
        (
            "origin differing in case",
            Some(&exact),
            false,
            preflight("https://APP.example"),
            "refuse 403",
        ),
        (
            "any origin echoes it",
            Some(&any),
            false,
            preflight("https://x.test"),
            "preflight https://x.test",
        ),
        (
            "regex match",
            Some(&re),
            false,
            preflight("https://a.example.com"),
            "preflight https://a.example.com",
        ),
        (
            "regex matches whole values only",
            Some(&re),
            false,
            preflight("https://a.example.com.evil"),
            "refuse 403",
        ),
        (
            "regex prefix only",
            Some(&re),
            false,
            preflight("xhttps://a.example.com"),
            "refuse 403",
        ),
        (
            "regex no match",
            Some(&re),
            false,
            preflight("https://A.example.com"),
            "refuse 403",
        ),
        (
            "OPTIONS without request method",
            Some(&exact),
            false,
            request(Method::OPTIONS, &[("origin", "https://app.example")]),
            "refuse 400",
        ),
        (
            "OPTIONS without origin",
            Some(&exact),
            false,
            request(
                Method::OPTIONS,
                &[("access-control-request-method", "POST")],
            ),
            "refuse 400",
        ),
        (
            "actual, allowed",
            Some(&exact),
            false,
            post("https://app.example"),
            "proceed https://app.example",
        ),
        (
            "actual, not allowed",
            Some(&exact),
            false,
            post("https://evil.example"),
            "proceed -",
        ),
        (
            "actual, no origin",
            Some(&exact),
            false,
            request(Method::POST, &[]),
            "proceed -",
        ),
        (
            "CORS off",
            None,
            false,
            preflight("https://app.example"),
            "proceed -",
        ),
        (
            "CORS off, OPTIONS",
            None,
            false,
            request(Method::OPTIONS, &[]),
            "proceed -",
        ),
        (
            "allow_cors: preflight to the backend",
            None,
            true,
            preflight("https://app.example"),
            "backend",
        ),
        (
            "allow_cors wins over the preset",
            Some(&exact),
            true,
            preflight("https://evil.example"),
            "backend",
        ),
        (
            "allow_cors, actual call",
            Some(&exact),
            true,
            post("https://app.example"),
            "proceed https://app.example",
        ),
    ];
    for (desc, policy, to_backend, request, want) in table {
        assert_eq!(outcome(*policy, *to_backend, request), *want, "{desc}");
    }
}

#[test]
fn preflight_headers_with_espv2_defaults() {
    let (method, headers) = preflight("https://app.example");
    let Step::End(Preflight::Answer(h)) = step(
        Some(&basic("https://app.example")),
        false,
        &method,
        &headers,
    ) else {
        panic!("not answered");
    };
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-methods"], DEFAULT_ALLOW_METHODS);
    assert_eq!(h["access-control-allow-headers"], DEFAULT_ALLOW_HEADERS);
    assert_eq!(h["access-control-max-age"], "1728000");
    assert_eq!(h["vary"], "Origin");
    assert!(!h.contains_key("access-control-allow-credentials"));
    assert!(!h.contains_key("access-control-expose-headers"));
}

#[test]
fn actual_headers_expose_grpc_web_status_and_credentials_when_asked() {
    let policy = CorsPolicy::new(&CorsSettings {
        allow_origin: "https://app.example".to_owned(),
        allow_credentials: true,
        max_age: Duration::from_secs(60),
        ..CorsSettings::new(CorsPreset::Basic)
    })
    .unwrap();
    let (method, headers) = request(Method::POST, &[("origin", "https://app.example")]);
    let Step::Proceed(Some(h)) = step(Some(&policy), false, &method, &headers) else {
        panic!("no headers");
    };
    assert_eq!(h["access-control-allow-credentials"], "true");
    let exposed = h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "content-length",
    ] {
        assert!(exposed.split(',').any(|e| e == name), "{name} in {exposed}");
    }
    assert!(!h.contains_key("access-control-max-age"));
    let (method, headers) = preflight("https://app.example");
    let Step::End(Preflight::Answer(h)) = step(Some(&policy), false, &method, &headers) else {
        panic!("not answered");
    };
    assert_eq!(h["access-control-max-age"], "60");
    assert_eq!(h["access-control-allow-credentials"], "true");
}

#[test]
fn settings_refused_at_start() {
    let bad = |settings: CorsSettings| CorsPolicy::new(&settings).unwrap_err().to_string();
    let basic = CorsSettings::new(CorsPreset::Basic);
    let with_regex = CorsSettings::new(CorsPreset::CorsWithRegex);
    assert_eq!(
        bad(CorsSettings {
            allow_origin: String::new(),
            ..basic.clone()
        }),
        "--cors-allow-origin cannot be empty when --cors-preset=basic"
    );
    assert_eq!(
        bad(with_regex.clone()),
        "--cors-allow-origin-regex cannot be empty when --cors-preset=cors_with_regex"
    );
    assert_eq!(
        bad(CorsSettings {
            allow_origin_regex: "(".to_owned(),
            ..with_regex.clone()
        }),
        "invalid --cors-allow-origin-regex"
    );
    assert_eq!(
        bad(CorsSettings {
            allow_origin_regex: "a{1000}{1000}".to_owned(),
            ..with_regex
        }),
        "invalid --cors-allow-origin-regex",
        "bounded size"
    );
    assert_eq!(
        bad(CorsSettings {
            allow_headers: "a\nb".to_owned(),
            ..basic
        }),
        "--cors-allow-headers is not a valid header value"
    );
}
