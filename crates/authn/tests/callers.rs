//! The caller decision (esprit extension `x_esprit_allowed_callers`) as a table: which claim
//! names the caller for each kind of issuer, forgery attempts, composition of requirements,
//! the verified-token cache, and `explain` agreeing with `authenticate` on every row.
#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use authn::{
    AuthInputs, AuthPolicy, CheckStatus, DEFAULT_SKEW, NoCache, Stage, VerifiedTokens,
    authenticate, explain,
};
use common::*;
use http::{HeaderMap, HeaderValue, Uri};
use jose::KeySet;
use serde_json::{Value, json};
use service_config::ProviderId;

const ACCOUNT: &str = "client@proj.iam.gserviceaccount.com";
const TOKEN_SERVICE: &str = "http://127.0.0.1:8081";

/// - `ListShelves` (`*`): the token service, callers `client@proj…` and `Other@Mixed.Example.COM`;
/// - `CreateShelf`: the token service, no list (every account);
/// - `GetShelf`: any of the token service listing `a@x.example`, or the single account
///   `client@proj…` (self-signed) listing itself;
/// - `ListBooks`: the token service twice, listing `a@x.example` and `b@x.example`;
/// - `DeleteShelf`: the single account, listing another account (never matches).
///
/// The token service signs with the RSA fixture (`rsa-1`), the account with the P-256 one
/// (`ec-1`): neither can sign the other's tokens.
const CONFIG: &str = r#"
type: google.api.Service
name: bookstore.example.com
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: ts
    issuer: http://127.0.0.1:8081
    jwks_uri: http://127.0.0.1:8081/oauth2/v3/certs
  - id: self
    issuer: client@proj.iam.gserviceaccount.com
    jwks_uri: https://www.googleapis.com/robot/v1/metadata/x509/client@proj.iam.gserviceaccount.com
  rules:
  - selector: "*"
    requirements:
    - provider_id: ts
      x_esprit_allowed_callers:
      - client@proj.iam.gserviceaccount.com
      - Other@Mixed.Example.COM
  - selector: endpoints.examples.bookstore.Bookstore.CreateShelf
    requirements:
    - provider_id: ts
  - selector: endpoints.examples.bookstore.Bookstore.GetShelf
    requirements:
    - provider_id: ts
      x_esprit_allowed_callers: [a@x.example]
    - provider_id: self
      xEspritAllowedCallers: [client@proj.iam.gserviceaccount.com]
  - selector: endpoints.examples.bookstore.Bookstore.ListBooks
    requirements:
    - provider_id: ts
      x_esprit_allowed_callers: [a@x.example]
    - provider_id: ts
      x_esprit_allowed_callers: [b@x.example]
  - selector: endpoints.examples.bookstore.Bookstore.DeleteShelf
    requirements:
    - provider_id: self
      x_esprit_allowed_callers: [a@x.example]
"#;

fn policy() -> &'static AuthPolicy {
    static POLICY: OnceLock<AuthPolicy> = OnceLock::new();
    POLICY.get_or_init(|| AuthPolicy::from_config(&load(CONFIG).unwrap_or_else(|e| panic!("{e}"))))
}

fn keys() -> HashMap<ProviderId, Arc<KeySet>> {
    HashMap::from([
        (
            ProviderId::new("ts"),
            Arc::new(jwks(&[jwk(rsa(), "rsa-1")])),
        ),
        (
            ProviderId::new("self"),
            Arc::new(jwks(&[jwk(p256(), "ec-1")])),
        ),
    ])
}

/// Signed by the token service's key, or by the account's when `iss` is the account.
fn sign(claims: &Value) -> String {
    if claims["iss"] == ACCOUNT {
        token_by(p256(), Some("ec-1"), claims)
    } else {
        token(claims)
    }
}

/// Signed by the account's key whatever the claims say (a forger's token).
fn by_account(claims: &Value) -> String {
    token_by(p256(), Some("ec-1"), claims)
}

/// An ID token from the token service for `email`, verified.
fn id_token(email: &str) -> Value {
    json!({
        "iss": TOKEN_SERVICE, "sub": "1234567890", "aud": SERVICE, "azp": "1234567890",
        "email": email, "email_verified": true, "iat": NOW.0, "exp": NOW.0 + 3600,
    })
}

/// `claims` with `changes` merged in; `null` removes a claim.
fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A self-signed JWT of the single account: `iss` = `sub` = its email.
fn self_signed() -> Value {
    json!({"iss": ACCOUNT, "sub": ACCOUNT, "email": ACCOUNT, "aud": SERVICE,
           "iat": NOW.0, "exp": NOW.0 + 3600})
}

/// The principal's provider, or the code and message of the refusal.
type Outcome = Result<Option<String>, (u16, String)>;

fn call(method: &str, token: &str, cache: &dyn VerifiedTokens) -> Outcome {
    let policy = policy()
        .method(&format!("/{PKG}/{method}"))
        .unwrap_or_else(|| panic!("no method {method}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let uri: Uri = format!("/{PKG}/{method}").parse().unwrap();
    let keys = keys();
    let inputs = AuthInputs {
        keys: &keys,
        cache,
        now: NOW,
        skew: DEFAULT_SKEW,
    };
    authenticate(policy, &headers, &uri, &inputs)
        .map(|allowed| allowed.principal.map(|p| p.provider().to_string()))
        .map_err(|e| (e.code().as_u16(), e.to_string()))
}

const DENIED: u16 = 7;
const NOT_ALLOWED: &str = "Caller in Jwt is not allowed";
const UNIDENTIFIED: &str = "Jwt has no verified email to identify the caller";

#[test]
fn caller_table() {
    let ok = |p: &str| Ok(Some(p.to_owned()));
    let denied = |m: &str| Err((DENIED, m.to_owned()));
    // (desc, method, token, want)
    let table: Vec<(&str, &str, String, Outcome)> = vec![
        (
            "token service: listed caller",
            "ListShelves",
            sign(&id_token(ACCOUNT)),
            ok("ts"),
        ),
        (
            "token service: unlisted caller",
            "ListShelves",
            sign(&id_token("intruder@proj.iam.gserviceaccount.com")),
            denied(NOT_ALLOWED),
        ),
        (
            "token service: domain compared case-insensitively",
            "ListShelves",
            sign(&id_token("Other@mixed.EXAMPLE.com")),
            ok("ts"),
        ),
        (
            "token service: local part compared exactly",
            "ListShelves",
            sign(&id_token("other@mixed.example.com")),
            denied(NOT_ALLOWED),
        ),
        (
            "token service: a listed email as a prefix is not a match",
            "ListShelves",
            sign(&id_token(
                "client@proj.iam.gserviceaccount.com.evil.example",
            )),
            denied(NOT_ALLOWED),
        ),
        (
            "token service: email missing",
            "ListShelves",
            sign(&with(id_token(ACCOUNT), json!({"email": null}))),
            denied(UNIDENTIFIED),
        ),
        (
            "token service: email_verified missing",
            "ListShelves",
            sign(&with(id_token(ACCOUNT), json!({"email_verified": null}))),
            denied(UNIDENTIFIED),
        ),
        (
            "token service: email_verified false",
            "ListShelves",
            sign(&with(id_token(ACCOUNT), json!({"email_verified": false}))),
            denied(UNIDENTIFIED),
        ),
        (
            "token service: email_verified as the string \"true\"",
            "ListShelves",
            sign(&with(id_token(ACCOUNT), json!({"email_verified": "true"}))),
            denied(UNIDENTIFIED),
        ),
        (
            "token service: email not a string",
            "ListShelves",
            sign(&with(id_token(ACCOUNT), json!({"email": [ACCOUNT]}))),
            denied(UNIDENTIFIED),
        ),
        (
            "token service: sub equal to a listed email does not count",
            "ListShelves",
            sign(&with(
                id_token("intruder@proj.iam.gserviceaccount.com"),
                json!({"sub": ACCOUNT}),
            )),
            denied(NOT_ALLOWED),
        ),
        (
            "no list: every account of the provider passes",
            "CreateShelf",
            sign(&id_token("anyone@else.example")),
            ok("ts"),
        ),
        (
            "no list: even without an email",
            "CreateShelf",
            sign(&with(
                id_token(ACCOUNT),
                json!({"email": null, "email_verified": null}),
            )),
            ok("ts"),
        ),
        (
            "any-of: the token service's listed caller",
            "GetShelf",
            sign(&id_token("a@x.example")),
            ok("ts"),
        ),
        (
            "any-of: the self-signed account",
            "GetShelf",
            sign(&self_signed()),
            ok("self"),
        ),
        (
            "forgery: the self-signed account claims a listed email of the other requirement: \
             it passes as itself",
            "GetShelf",
            sign(&with(
                self_signed(),
                json!({"email": "a@x.example", "email_verified": true}),
            )),
            ok("self"),
        ),
        (
            "forgery: the self-signed account claims the listed email: its caller is its issuer",
            "DeleteShelf",
            sign(&with(
                self_signed(),
                json!({"email": "a@x.example", "email_verified": true}),
            )),
            denied(NOT_ALLOWED),
        ),
        (
            "forgery: the account signs a token naming the token service as issuer",
            "ListShelves",
            by_account(&id_token(ACCOUNT)),
            Err((
                16,
                "Jwks doesn't have key to match kid or alg from Jwt".to_owned(),
            )),
        ),
        (
            "any-of: a token service caller listed by neither requirement",
            "GetShelf",
            sign(&id_token(ACCOUNT)),
            denied(NOT_ALLOWED),
        ),
        (
            "two requirements of one provider: the first list",
            "ListBooks",
            sign(&id_token("a@x.example")),
            ok("ts"),
        ),
        (
            "two requirements of one provider: the second list",
            "ListBooks",
            sign(&id_token("b@x.example")),
            ok("ts"),
        ),
        (
            "two requirements of one provider: neither list",
            "ListBooks",
            sign(&id_token("c@x.example")),
            denied(NOT_ALLOWED),
        ),
        (
            "the caller check runs after the audience check",
            "ListShelves",
            sign(&with(
                id_token("intruder@x.example"),
                json!({"aud": "other.example"}),
            )),
            denied("Audiences in Jwt are not allowed"),
        ),
    ];
    for (desc, method, token, want) in table {
        let got = call(method, &token, &NoCache);
        assert_eq!(got, want, "{desc}");
        // A second call through a cache that already holds the token runs the same check.
        let cache = MapCache::default();
        let _ = call(method, &token, &cache);
        assert_eq!(call(method, &token, &cache), want, "{desc} (cached)");
        // `explain` runs the same checks and must agree.
        let policy = policy().method(&format!("/{PKG}/{method}")).unwrap();
        let explained = explain(&token, policy, &keys(), NOW, DEFAULT_SKEW);
        let explained = explained
            .result
            .map(|p| p.map(|p| p.to_string()))
            .map_err(|e| (e.code().as_u16(), e.to_string()));
        assert_eq!(explained, want, "{desc} (explain)");
    }
}

/// A token cached by a method that accepts every account is still refused by a method whose
/// list does not name its caller.
#[test]
fn a_cached_token_meets_each_methods_list() {
    let cache = MapCache::default();
    let token = sign(&id_token("anyone@else.example"));
    assert_eq!(
        call("CreateShelf", &token, &cache),
        Ok(Some("ts".to_owned()))
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(
        call("ListShelves", &token, &cache),
        Err((DENIED, NOT_ALLOWED.to_owned()))
    );
    assert!(cache.hits() >= 1, "the second call used the cache entry");
}

#[test]
fn explain_says_who_the_caller_is_and_who_is_allowed() {
    let policy = policy().method(&format!("/{PKG}/ListShelves")).unwrap();
    let detail = |claims: &Value| {
        let e = explain(&sign(claims), policy, &keys(), NOW, DEFAULT_SKEW);
        let check = e.checks.iter().find(|c| c.stage == Stage::Caller).unwrap();
        (check.status, check.detail.clone())
    };
    assert_eq!(
        detail(&id_token("intruder@x.example")),
        (
            CheckStatus::Failed,
            "Caller in Jwt is not allowed (caller intruder@x.example (verified email claim); \
             allowed callers: [\"client@proj.iam.gserviceaccount.com\", \"Other@mixed.example.com\"])"
                .to_owned()
        )
    );
    assert_eq!(
        detail(&with(id_token(ACCOUNT), json!({"email_verified": null}))),
        (
            CheckStatus::Failed,
            "Jwt has no verified email to identify the caller (email \
             \"client@proj.iam.gserviceaccount.com\", email_verified absent (the caller must be \
             a verified email); allowed callers: [\"client@proj.iam.gserviceaccount.com\", \
             \"Other@mixed.example.com\"])"
                .to_owned()
        )
    );
    assert_eq!(detail(&id_token(ACCOUNT)).0, CheckStatus::Passed);
    let any = policy_for("CreateShelf");
    let e = explain(&sign(&id_token(ACCOUNT)), any, &keys(), NOW, DEFAULT_SKEW);
    let check = e.checks.iter().find(|c| c.stage == Stage::Caller).unwrap();
    assert_eq!(
        check.detail,
        "every account of the provider may call (no x_esprit_allowed_callers)"
    );
}

fn policy_for(method: &str) -> &'static authn::MethodPolicy {
    policy().method(&format!("/{PKG}/{method}")).unwrap()
}

/// Config validation of the field: where it may appear and what it may hold.
#[test]
fn the_field_is_validated_where_it_is_read_and_refused_elsewhere() {
    let base = |requirement_extra: &str, rule_extra: &str, provider_extra: &str| {
        format!(
            r#"
type: google.api.Service
name: bookstore.example.com
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: ts
    issuer: https://ts.example.com
{provider_extra}
  rules:
  - selector: "*"
{rule_extra}
    requirements:
    - provider_id: ts
{requirement_extra}
"#
        )
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "valid",
            base("      x_esprit_allowed_callers: [a@x.example]", "", ""),
            None,
        ),
        (
            "empty list",
            base("      x_esprit_allowed_callers: []", "", ""),
            Some(
                "authentication.rules[0].requirements[0].x_esprit_allowed_callers: list at least \
                 one caller email, or remove the field to accept every account of the provider",
            ),
        ),
        (
            "not an email",
            base("      x_esprit_allowed_callers: [a@x.example, bob]", "", ""),
            Some(
                "authentication.rules[0].requirements[0].x_esprit_allowed_callers[1]: \"bob\" is \
                 not an account email (name@domain.example)",
            ),
        ),
        (
            "duplicate (domain case aside)",
            base(
                "      x_esprit_allowed_callers: [a@x.example, a@X.Example]",
                "",
                "",
            ),
            Some(
                "authentication.rules[0].requirements[0].x_esprit_allowed_callers[1]: \
                 a@x.example is listed more than once",
            ),
        ),
        (
            "not a list",
            base("      x_esprit_allowed_callers: a@x.example", "", ""),
            Some("x_esprit_allowed_callers"),
        ),
        (
            "with allow_without_credential",
            base(
                "      x_esprit_allowed_callers: [a@x.example]",
                "    allow_without_credential: true",
                "",
            ),
            Some(
                "authentication.rules[0].allow_without_credential: a rule whose requirements \
                 list x_esprit_allowed_callers must not allow calls without a token",
            ),
        ),
        (
            "on a provider",
            base("", "", "    x_esprit_allowed_callers: [a@x.example]"),
            Some(
                "authentication.providers[0].x_esprit_allowed_callers: a list of callers is the \
                 esprit extension x_esprit_allowed_callers, accepted only on \
                 authentication.rules[].requirements[]",
            ),
        ),
        (
            "on a rule",
            base("", "    x_esprit_allowed_callers: [a@x.example]", ""),
            Some(
                "authentication.rules[0].x_esprit_allowed_callers: a list of callers is the \
                 esprit extension",
            ),
        ),
        (
            "short spelling on a requirement",
            base("      allowed_callers: [a@x.example]", "", ""),
            Some(
                "authentication.rules[0].requirements[0].allowed_callers: a list of callers is \
                 the esprit extension x_esprit_allowed_callers",
            ),
        ),
    ];
    for (desc, yaml, want) in cases {
        match (load(&yaml), want) {
            (Ok(_), None) => {}
            (Ok(_), Some(want)) => panic!("{desc}: loaded, want an error containing {want:?}"),
            (Err(errors), None) => panic!("{desc}: {errors}"),
            (Err(errors), Some(want)) => {
                assert!(errors.to_string().contains(want), "{desc}: {errors}")
            }
        }
    }
}
