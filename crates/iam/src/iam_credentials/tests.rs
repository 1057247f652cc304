use super::*;
use serde_json::json;

const A: &str = "alpha-1@proj-one.iam.gserviceaccount.com";
const B: &str = "bravo-2@proj-one.iam.gserviceaccount.com";

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn paths() {
    let call = |project: &str, account: &str, method| {
        Some(CallPath {
            project: project.into(),
            account: account.into(),
            method,
        })
    };
    let table: &[(&str, Option<CallPath>)] = &[
        (
            "/v1/projects/-/serviceAccounts/alpha-1@proj-one.iam.gserviceaccount.com:generateIdToken",
            call("-", A, Method::GenerateIdToken),
        ),
        (
            "/v1/projects/-/serviceAccounts/alpha-1%40proj-one.iam.gserviceaccount.com:generateAccessToken",
            call("-", A, Method::GenerateAccessToken),
        ),
        (
            "/v1/projects/-/serviceAccounts/x:signJwt",
            call("-", "x", Method::SignJwt),
        ),
        (
            "/v1/projects/proj-one/serviceAccounts/x:signJwt",
            call("proj-one", "x", Method::SignJwt),
        ),
        ("/v1/projects/-/serviceAccounts/x:signBlob", None),
        ("/v1/projects/-/serviceAccounts/:signJwt", None),
        ("/v1/projects/-/serviceAccounts/x", None),
        ("/v1/projects/-/serviceAccounts/a/b:signJwt", None),
        ("/v1/projects//serviceAccounts/x:signJwt", None),
        ("/v1/projects/a/b/serviceAccounts/x:signJwt", None),
        ("/v2/projects/-/serviceAccounts/x:signJwt", None),
        ("/v1/projects/-/serviceAccounts/%ff:signJwt", None),
    ];
    for (path, want) in table {
        assert_eq!(&parse_path(path), want, "{path}");
    }
}

#[test]
fn id_token_bodies() {
    let ok = |v: Value| id_token_request(&body(v)).unwrap();
    let r = ok(json!({"audience": "svc", "includeEmail": true, "delegates": null}));
    assert_eq!(
        r,
        IdTokenRequest {
            audience: "svc".into(),
            include_email: true,
            delegates: vec![],
            use_email_azp: false
        }
    );
    // google-auth's IAM path sends the booleans as strings.
    let r = ok(json!({"audience": "svc", "includeEmail": "true", "useEmailAzp": "true"}));
    assert!(r.include_email && r.use_email_azp);
    assert!(!ok(json!({"audience": "svc", "includeEmail": "false"})).include_email);
    assert!(!ok(json!({"audience": "svc"})).include_email);
    let r = ok(json!({"audience": "svc", "delegates": [
        format!("projects/-/serviceAccounts/{A}"), format!("projects/-/serviceAccounts/{B}")]}));
    assert_eq!(r.delegates, vec![A.to_owned(), B.to_owned()]);

    let too_many: Vec<String> = (0..=MAX_DELEGATES)
        .map(|_| format!("projects/-/serviceAccounts/{A}"))
        .collect();
    let refused: &[(&[u8], &str)] = &[
        (b"", "Invalid JSON payload received"),
        (b"not json", "Invalid JSON payload received"),
        (b"[]", "must be a JSON object"),
        (b"{}", "audience is required"),
        (br#"{"audience": ""}"#, "audience is required"),
        (br#"{"audience": 5}"#, "Invalid value for audience"),
        (
            br#"{"audience": "a", "includeEmail": "yes"}"#,
            "Invalid value for includeEmail",
        ),
        (
            br#"{"audience": "a", "includeEmail": 1}"#,
            "Invalid value for includeEmail",
        ),
        (
            br#"{"audience": "a", "useEmailAzp": "TRUE"}"#,
            "Invalid value for useEmailAzp",
        ),
        (
            br#"{"audience": "a", "extra": 1}"#,
            "Unknown name \"extra\"",
        ),
        (
            br#"{"audience": "a", "delegates": "x"}"#,
            "Invalid value for delegates",
        ),
        (
            br#"{"audience": "a", "delegates": [1]}"#,
            "Invalid delegate 1",
        ),
        (
            br#"{"audience": "a", "delegates": ["alpha-1@proj-one.iam.gserviceaccount.com"]}"#,
            "expected projects/-/serviceAccounts/EMAIL",
        ),
        (
            br#"{"audience": "a", "delegates": ["projects/-/serviceAccounts/bob@example.com"]}"#,
            "Invalid delegate: invalid resource",
        ),
    ];
    for (text, want) in refused {
        let err = id_token_request(text).unwrap_err();
        assert!(
            err.0.contains(want),
            "{}: {err:?}",
            String::from_utf8_lossy(text)
        );
    }
    let err = id_token_request(&body(json!({"audience": "a", "delegates": too_many}))).unwrap_err();
    assert!(err.0.starts_with("Too many delegates"), "{err:?}");
}

#[test]
fn access_token_bodies() {
    let r = access_token_request(&body(json!({
        "delegates": null, "scope": ["https://www.googleapis.com/auth/cloud-platform"],
        "lifetime": "3600s"})))
    .unwrap();
    assert_eq!(
        r.scopes,
        vec!["https://www.googleapis.com/auth/cloud-platform"]
    );
    assert_eq!(r.lifetime, Duration::from_secs(3600));
    let r = access_token_request(&body(json!({"scope": ["a", "b"]}))).unwrap();
    assert_eq!(r.lifetime, MAX_ACCESS_TOKEN_LIFETIME);
    let r = access_token_request(&body(json!({"scope": ["a"], "lifetime": "300.5s"}))).unwrap();
    assert_eq!(r.lifetime, Duration::from_secs(300));

    let refused: &[(Value, &str)] = &[
        (json!({}), "scope is required"),
        (json!({"scope": []}), "scope is required"),
        (json!({"scope": null}), "scope is required"),
        (json!({"scope": "a"}), "Invalid value for scope"),
        (json!({"scope": [""]}), "Invalid scope"),
        (json!({"scope": ["a b"]}), "Invalid scope"),
        (json!({"scope": [1]}), "Invalid scope"),
        (
            json!({"scope": ["a"], "lifetime": 3600}),
            "Invalid value for lifetime",
        ),
        (
            json!({"scope": ["a"], "lifetime": "3601s"}),
            "greater than the maximum allowed (3600s)",
        ),
        (
            json!({"scope": ["a"], "lifetime": "3600.5s"}),
            "greater than the maximum",
        ),
        (
            json!({"scope": ["a"], "lifetime": "99999999999999999999999s"}),
            "greater than the maximum",
        ),
        (json!({"scope": ["a"], "lifetime": "0s"}), "too short"),
        (
            json!({"scope": ["a"], "lifetime": "1h"}),
            "expected a duration",
        ),
        (
            json!({"scope": ["a"], "lifetime": "3600"}),
            "expected a duration",
        ),
        (
            json!({"scope": ["a"], "lifetime": "-5s"}),
            "expected a duration",
        ),
        (
            json!({"scope": ["a"], "lifetime": "s"}),
            "expected a duration",
        ),
        (
            json!({"scope": ["a"], "lifetime": ".5s"}),
            "expected a duration",
        ),
        (
            json!({"scope": ["a"], "scopes": ["b"]}),
            "Unknown name \"scopes\"",
        ),
        (
            json!({"scope": ["a"], "delegates": ["x"]}),
            "Invalid delegate",
        ),
    ];
    for (v, want) in refused {
        let err = access_token_request(&body(v.clone())).unwrap_err();
        assert!(err.0.contains(want), "{v}: {err:?}");
    }
    let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
    let err = access_token_request(&body(json!({ "scope": many }))).unwrap_err();
    assert!(err.0.starts_with("Too many scopes"), "{err:?}");
}

#[test]
fn sign_jwt_bodies() {
    const NOW: u64 = 1_800_000_000;
    let payload = |claims: Value| body(json!({"payload": claims.to_string()}));
    let r = sign_jwt_request(
        &payload(json!({"sub": A, "aud": "x", "exp": NOW + 60})),
        NOW,
    )
    .unwrap();
    assert_eq!(
        Value::Object(r.claims),
        json!({"sub": A, "aud": "x", "exp": NOW + 60})
    );
    // No exp: one hour from now is added.
    let r = sign_jwt_request(&payload(json!({"sub": A})), NOW).unwrap();
    assert_eq!(r.claims["exp"], json!(NOW + 3600));
    // The bounds: now, and exactly 12 h ahead.
    assert!(sign_jwt_request(&payload(json!({"exp": NOW})), NOW).is_ok());
    assert!(sign_jwt_request(&payload(json!({"exp": NOW + 12 * 3600})), NOW).is_ok());
    let r = sign_jwt_request(
        &body(json!({"payload": "{}", "delegates": [format!("projects/-/serviceAccounts/{B}")]})),
        NOW,
    )
    .unwrap();
    assert_eq!(r.delegates, vec![B.to_owned()]);

    let refused: &[(Vec<u8>, &str)] = &[
        (payload(json!({"exp": NOW - 1})), "is in the past"),
        (
            payload(json!({"exp": NOW + 12 * 3600 + 1})),
            "more than 12 hours in the future",
        ),
        (
            payload(json!({"exp": "soon"})),
            "must be an integer timestamp",
        ),
        (payload(json!({"exp": 1.5})), "must be an integer timestamp"),
        (payload(json!({"exp": -1})), "must be an integer timestamp"),
        (payload(json!([1, 2])), "must be a JSON object"),
        (payload(json!("text")), "must be a JSON object"),
        (body(json!({"payload": "{not json"})), "not JSON"),
        (
            body(json!({"payload": {"sub": A}})),
            "Invalid value for payload",
        ),
        (body(json!({})), "payload is required"),
        (body(json!({"payload": "{}", "x": 1})), "Unknown name \"x\""),
    ];
    for (text, want) in refused {
        let err = sign_jwt_request(text, NOW).unwrap_err();
        assert!(
            err.0.contains(want),
            "{}: {err:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn bearers_and_scopes() {
    use Unauthenticated::{Invalid, Missing};
    type Row<'a> = (Option<&'a [u8]>, Result<&'a str, Unauthenticated>);
    let table: &[Row<'_>] = &[
        (Some(b"Bearer abc"), Ok("abc")),
        (Some(b"bearer abc"), Ok("abc")),
        (Some(b"BEARER   abc  "), Ok("abc")),
        (None, Err(Missing)),
        (Some(b""), Err(Missing)),
        (Some(b"abc"), Err(Missing)),
        (Some(b"Basic dXNlcjpwdw=="), Err(Missing)),
        (Some(b"Bearer "), Err(Missing)),
        (Some(b"Bearer \xff"), Err(Invalid)),
    ];
    for (header, want) in table {
        assert_eq!(&bearer(*header), want, "{header:?}");
    }
    let long = format!("Bearer {}", "a".repeat(MAX_BEARER_LEN + 1));
    assert_eq!(bearer(Some(long.as_bytes())), Err(Invalid));
    assert!(
        Missing
            .message()
            .starts_with("Request is missing required authentication")
    );
    assert!(
        Invalid
            .message()
            .starts_with("Request had invalid authentication")
    );

    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert!(has_caller_scope(&s(&[
        "https://www.googleapis.com/auth/iam"
    ])));
    assert!(has_caller_scope(&s(&[
        "x",
        "https://www.googleapis.com/auth/cloud-platform"
    ])));
    assert!(!has_caller_scope(&s(&[
        "https://www.googleapis.com/auth/userinfo.email"
    ])));
    assert!(!has_caller_scope(&[]));
}

#[test]
fn expire_times_are_whole_seconds_in_utc() {
    assert_eq!(expire_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(expire_time(1_800_000_000), "2027-01-15T08:00:00Z");
}

#[test]
fn denied_messages_do_not_say_whether_the_account_exists() {
    assert_eq!(
        Method::GenerateIdToken.denied_message(),
        "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not \
         exist)."
    );
    assert_eq!(Method::SignJwt.permission(), "iam.serviceAccounts.signJwt");
    assert_eq!(
        Method::GenerateAccessToken.permission(),
        "iam.serviceAccounts.getAccessToken"
    );
}
