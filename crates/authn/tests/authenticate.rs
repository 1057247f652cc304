//! The decision table: one request per row, asserting the gRPC code AND the message.
#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use authn::{Allowed, AuthInputs, DEFAULT_SKEW, NoCache, authenticate, explain};
use common::*;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use jose::{Algorithm, KeySet, Signer, UnixTime};
use serde_json::json;
use service_config::ProviderId;

const UNAUTHENTICATED: u16 = 16;
const PERMISSION_DENIED: u16 = 7;

#[derive(Clone, Debug)]
enum Want {
    /// Allowed; the provider of the principal, `None` for no principal.
    Allowed(Option<&'static str>),
    Rejected(u16, String),
}

#[derive(Clone, Debug)]
enum Keys {
    Standard,
    /// The standard sets without this provider's (never fetched).
    Without(&'static str),
}

#[derive(Clone, Debug)]
struct Case {
    desc: &'static str,
    method: &'static str,
    headers: Vec<(String, String)>,
    query: Option<String>,
    now: UnixTime,
    keys: Keys,
    want: Want,
}

fn case(desc: &'static str, method: &'static str) -> Case {
    Case {
        desc,
        method,
        headers: Vec::new(),
        query: None,
        now: NOW,
        keys: Keys::Standard,
        want: Want::Allowed(None),
    }
}

impl Case {
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }
    fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }
    fn at(mut self, now: u64) -> Self {
        self.now = UnixTime(now);
        self
    }
    fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }
    fn ok(mut self, provider: &'static str) -> Self {
        self.want = Want::Allowed(Some(provider));
        self
    }
    fn anonymous(mut self) -> Self {
        self.want = Want::Allowed(None);
        self
    }
    fn err(mut self, code: u16, message: impl Into<String>) -> Self {
        self.want = Want::Rejected(code, message.into());
        self
    }
    /// The single bearer token of the row, when that is all it sends (for `explain`).
    fn only_bearer(&self) -> Option<&str> {
        match (self.headers.as_slice(), &self.query) {
            ([(name, value)], None) if name == "Authorization" => value.strip_prefix("Bearer "),
            _ => None,
        }
    }
}

fn request(case: &Case) -> (HeaderMap, Uri) {
    let mut headers = HeaderMap::new();
    for (name, value) in &case.headers {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let path = format!("/{PKG}/{}", case.method);
    let uri = match &case.query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    (headers, uri.parse().unwrap())
}

fn sets(keys: &Keys) -> HashMap<ProviderId, Arc<KeySet>> {
    let mut sets = key_sets();
    if let Keys::Without(id) = keys {
        sets.remove(&ProviderId::new(*id));
    }
    sets
}

fn cases() -> Vec<Case> {
    let good = token(&claims());
    let b_claims = claims_with(json!({"iss": ISS_B, "aud": "b2"}));
    let long = "a".repeat(jose::MAX_TOKEN_BYTES + 1);
    let hs256 = Signer::hmac(&[7u8; 32])
        .sign_jwt(Some("rsa-1"), Algorithm::HS256, &claims())
        .unwrap();
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    vec![
        // Missing tokens.
        case("valid bearer token", "ListShelves")
            .bearer(&good)
            .ok("a"),
        case("no token, Reject", "ListShelves").err(UNAUTHENTICATED, "Jwt is missing"),
        case("no token, Allow", "CreateShelf").anonymous(),
        case(
            "valid token under Allow still yields the principal",
            "CreateShelf",
        )
        .bearer(&good)
        .ok("a"),
        case("invalid token under Allow is rejected", "CreateShelf")
            .bearer(&tampered(&good))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
        case(
            "rule without requirements ignores even garbage",
            "DeleteBook",
        )
        .bearer("garbage")
        .anonymous(),
        case("other auth scheme is no JWT", "ListShelves")
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .err(UNAUTHENTICATED, "Jwt is missing"),
        // Malformed.
        case("no dots", "ListShelves").bearer("abc").err(
            UNAUTHENTICATED,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        case("three dots", "ListShelves").bearer("a.b.c.d").err(
            UNAUTHENTICATED,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        case("empty bearer token", "ListShelves").bearer("").err(
            UNAUTHENTICATED,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        case("header not base64url", "ListShelves")
            .bearer(&format!("!!!.{}.c2ln", b64(b"{}")))
            .err(
                UNAUTHENTICATED,
                "Jwt header is an invalid Base64url encoded",
            ),
        case("header not JSON", "ListShelves")
            .bearer(&raw_token("not json", "{}"))
            .err(UNAUTHENTICATED, "Jwt header is an invalid JSON"),
        case("payload not JSON", "ListShelves")
            .bearer(&raw_token(header, "not json"))
            .err(UNAUTHENTICATED, "Jwt payload is an invalid JSON"),
        case("alg none", "ListShelves")
            .bearer(&format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(claims().to_string().as_bytes())
            ))
            .err(UNAUTHENTICATED, "Jwt header [alg] is not supported"),
        case("unsupported alg", "ListShelves")
            .bearer(&raw_token(
                r#"{"alg":"RS1","kid":"rsa-1"}"#,
                &claims().to_string(),
            ))
            .err(UNAUTHENTICATED, "Jwt header [alg] is not supported"),
        case("HMAC against a remote key set", "ListShelves")
            .bearer(&hs256)
            .err(UNAUTHENTICATED, "Jwt header [alg] is not supported"),
        case("oversized token", "ListShelves").bearer(&long).err(
            UNAUTHENTICATED,
            "Jwt is too large (65537 bytes; the limit is 65536 bytes)",
        ),
        // Issuer.
        case("unknown issuer", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"iss": "https://evil.example.com"}),
            )))
            .err(UNAUTHENTICATED, "Jwt issuer is not configured"),
        case("issuer differs by a trailing slash", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"iss": "https://a.example.com/"}),
            )))
            .err(UNAUTHENTICATED, "Jwt issuer is not configured"),
        case("no issuer", "ListShelves")
            .bearer(&token(&claims_with(json!({"iss": null}))))
            .err(UNAUTHENTICATED, "Jwt issuer is not configured"),
        // Time, at the exact skew boundaries (skew 60 s).
        case("exp + skew == now passes", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": NOW.0 - 60}))))
            .ok("a"),
        case("exp + skew == now - 1 is expired", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": NOW.0 - 61}))))
            .err(UNAUTHENTICATED, "Jwt is expired"),
        case("checked an hour later: expired", "ListShelves")
            .bearer(&good)
            .at(NOW.0 + 3661)
            .err(UNAUTHENTICATED, "Jwt is expired"),
        case("nbf == now + skew passes", "ListShelves")
            .bearer(&token(&claims_with(json!({"nbf": NOW.0 + 60}))))
            .ok("a"),
        case("nbf == now + skew + 1 is not yet valid", "ListShelves")
            .bearer(&token(&claims_with(json!({"nbf": NOW.0 + 61}))))
            .err(UNAUTHENTICATED, "Jwt not yet valid"),
        case("exp missing, required", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": null}))))
            .err(UNAUTHENTICATED, "Jwt payload [exp] field is required"),
        case("exp missing, optional provider", "DeleteShelf")
            .bearer(&token(&claims_with(json!({"exp": null, "iss": ISS_OPT}))))
            .ok("opt"),
        case("exp present and expired, optional provider", "DeleteShelf")
            .bearer(&token(&claims_with(
                json!({"exp": NOW.0 - 61, "iss": ISS_OPT}),
            )))
            .err(UNAUTHENTICATED, "Jwt is expired"),
        case("exp a string", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": "1700003600"}))))
            .err(UNAUTHENTICATED, "Jwt payload [exp] field is not an integer"),
        case("exp a float", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": 1_700_003_600.5}))))
            .err(UNAUTHENTICATED, "Jwt payload [exp] field is not an integer"),
        case(
            "exp a string, optional provider: still malformed",
            "DeleteShelf",
        )
        .bearer(&token(&claims_with(json!({"exp": "soon", "iss": ISS_OPT}))))
        .err(UNAUTHENTICATED, "Jwt payload [exp] field is not an integer"),
        // Audience.
        case("audience mismatch", "ListShelves")
            .bearer(&token(&claims_with(json!({"aud": "other.example.com"}))))
            .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("no aud", "ListShelves")
            .bearer(&token(&claims_with(json!({"aud": null}))))
            .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("aud with https scheme", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"aud": "https://bookstore.example.com"}),
            )))
            .ok("a"),
        case("aud with https scheme and trailing slash", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"aud": "https://bookstore.example.com/"}),
            )))
            .ok("a"),
        case("aud with http scheme and trailing slash", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"aud": "http://bookstore.example.com/"}),
            )))
            .ok("a"),
        case("aud with two trailing slashes", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"aud": "https://bookstore.example.com//"}),
            )))
            .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("aud list with a match", "ListShelves")
            .bearer(&token(&claims_with(
                json!({"aud": ["x.example.com", "https://bookstore.example.com"]}),
            )))
            .ok("a"),
        case("aud list without a match", "ListShelves")
            .bearer(&token(&claims_with(json!({"aud": ["x", "y"]}))))
            .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("requirement audience overrides the default", "GetBook")
            .bearer(&good)
            .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("requirement audience, bare form in the token", "GetBook")
            .bearer(&token(&claims_with(json!({"aud": "override.example.com"}))))
            .ok("a"),
        // Any-of requirements.
        case("any-of: first provider", "GetShelf")
            .bearer(&good)
            .ok("a"),
        case("any-of: second provider", "GetShelf")
            .bearer(&token_by(b_key(), Some("b-1"), &b_claims))
            .ok("b"),
        case("any-of: provider audience list, normalized", "GetShelf")
            .bearer(&token_by(
                b_key(),
                Some("b-1"),
                &claims_with(json!({"iss": ISS_B, "aud": "b1.example.com"})),
            ))
            .ok("b"),
        case(
            "any-of: second provider, service name is not its audience",
            "GetShelf",
        )
        .bearer(&token_by(
            b_key(),
            Some("b-1"),
            &claims_with(json!({"iss": ISS_B})),
        ))
        .err(PERMISSION_DENIED, "Audiences in Jwt are not allowed"),
        case("any-of: issuer b signed with a's key", "GetShelf")
            .bearer(&token(&b_claims))
            .err(
                UNAUTHENTICATED,
                "Jwks doesn't have key to match kid or alg from Jwt",
            ),
        case(
            "any-of, same issuer: the second provider's keys",
            "GetShelf",
        )
        .bearer(&token_by(b_key(), Some("b-1"), &claims()))
        .ok("a2"),
        case(
            "any-of, same issuer: the furthest failure is reported",
            "GetShelf",
        )
        .bearer(&token_by(stranger(), Some("b-1"), &claims()))
        .err(UNAUTHENTICATED, "Jwt verification fails"),
        case("any-of, same issuer: kid in neither set", "GetShelf")
            .bearer(&token_by(stranger(), Some("zzz"), &claims()))
            .err(
                UNAUTHENTICATED,
                "Jwks doesn't have key to match kid or alg from Jwt",
            ),
        case("provider not required by the method", "ListShelves")
            .bearer(&token_by(b_key(), Some("b-1"), &b_claims))
            .err(UNAUTHENTICATED, "Jwt issuer is not configured"),
        // Several tokens: each must validate.
        case("header and query, both good", "ListShelves")
            .bearer(&good)
            .query(format!("access_token={good}"))
            .ok("a"),
        case("header good, query bad", "ListShelves")
            .bearer(&good)
            .query(format!("access_token={}", tampered(&good)))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
        case("header expired, query good", "ListShelves")
            .bearer(&token(&claims_with(json!({"exp": NOW.0 - 61}))))
            .query(format!("access_token={good}"))
            .err(UNAUTHENTICATED, "Jwt is expired"),
        case("two headers, both good", "CreateBook")
            .bearer(&good)
            .header("X-Second", token(&claims_with(json!({"iss": ISS_SECOND}))))
            .ok("a"),
        case("two headers, second expired", "CreateBook")
            .bearer(&good)
            .header(
                "X-Second",
                token(&claims_with(json!({"iss": ISS_SECOND, "exp": NOW.0 - 61}))),
            )
            .err(UNAUTHENTICATED, "Jwt is expired"),
        case(
            "token at a location its provider does not list",
            "CreateBook",
        )
        .header("X-Second", good.clone())
        .err(UNAUTHENTICATED, "Jwt issuer is not configured"),
        case("IAP header (a default location)", "ListShelves")
            .header("X-Goog-Iap-Jwt-Assertion", good.clone())
            .ok("a"),
        case("repeated Authorization header, one bad", "ListShelves")
            .bearer(&good)
            .bearer(&tampered(&good))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
        // Extraction.
        case("bearer scheme lowercase", "ListShelves")
            .header("Authorization", format!("bearer {good}"))
            .ok("a"),
        case("bearer scheme uppercase", "ListShelves")
            .header("authorization", format!("BEARER {good}"))
            .ok("a"),
        case("bearer without the space is not the prefix", "ListShelves")
            .header("Authorization", format!("Bearer{good}"))
            .err(UNAUTHENTICATED, "Jwt is missing"),
        case("custom header with its prefix", "ListBooks")
            .header(
                "X-CUSTOM-TOKEN",
                format!("Token {}", token(&claims_with(json!({"iss": ISS_CUSTOM})))),
            )
            .ok("custom"),
        case("custom prefix is matched exactly", "ListBooks")
            .header(
                "x-custom-token",
                format!("token {}", token(&claims_with(json!({"iss": ISS_CUSTOM})))),
            )
            .err(UNAUTHENTICATED, "Jwt is missing"),
        case("custom provider does not read Authorization", "ListBooks")
            .bearer(&token(&claims_with(json!({"iss": ISS_CUSTOM}))))
            .err(UNAUTHENTICATED, "Jwt is missing"),
        case("query parameter token", "ListBooks")
            .query(format!(
                "x=1&jwt={}",
                token(&claims_with(json!({"iss": ISS_CUSTOM})))
            ))
            .ok("custom"),
        case("query parameter token, percent-encoded", "ListBooks")
            .query(format!(
                "jwt={}",
                token(&claims_with(json!({"iss": ISS_CUSTOM}))).replace('.', "%2E")
            ))
            .ok("custom"),
        case("default query parameter access_token", "ListShelves")
            .query(format!("access_token={good}"))
            .ok("a"),
        // Keys and signature.
        case("key set not fetched", "ListShelves")
            .bearer(&good)
            .keys(Keys::Without("a"))
            .err(UNAUTHENTICATED, "Jwks remote fetch is failed"),
        case("unknown kid", "ListShelves")
            .bearer(&token_by(stranger(), Some("rotated"), &claims()))
            .err(
                UNAUTHENTICATED,
                "Jwks doesn't have key to match kid or alg from Jwt",
            ),
        case("ES256 with the EC fixture", "ListShelves")
            .bearer(&token_by(p256(), Some("ec-1"), &claims()))
            .ok("a"),
        case("ES256 without kid tries every key", "ListShelves")
            .bearer(&token_by(p256(), None, &claims()))
            .ok("a"),
        case("known kid, wrong key", "ListShelves")
            .bearer(&token_by(stranger(), Some("ec-1"), &claims()))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
        case("flipped signature bit", "ListShelves")
            .bearer(&tampered(&good))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
        case("payload swapped under a valid signature", "ListShelves")
            .bearer(&with_payload(&good, &claims_with(json!({"sub": "admin"}))))
            .err(UNAUTHENTICATED, "Jwt verification fails"),
    ]
}

#[test]
fn decision_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let keys = sets(&case.keys);
        let inputs = AuthInputs {
            keys: &keys,
            cache: &NoCache,
            now: case.now,
            skew: DEFAULT_SKEW,
        };
        let (headers, uri) = request(&case);
        let got = authenticate(method(case.method), &headers, &uri, &inputs);
        let got = match got {
            Ok(Allowed { principal }) => {
                Want::Allowed(principal.map(|p| match p.provider().as_str() {
                    "a" => "a",
                    "b" => "b",
                    "opt" => "opt",
                    "custom" => "custom",
                    "second" => "second",
                    "a2" => "a2",
                    other => panic!("{other}"),
                }))
            }
            Err(e) => Want::Rejected(e.code().as_u16(), e.to_string()),
        };
        if format!("{got:?}") != format!("{:?}", case.want) {
            failures.push(format!("{}: got {got:?}, want {:?}", case.desc, case.want));
        }
        // `explain` runs the same checks: it must reach the same result for a lone token.
        if let Some(token) = case.only_bearer() {
            let explained = explain(token, method(case.method), &keys, case.now, DEFAULT_SKEW);
            let explained = match explained.result {
                Ok(p) => format!("{:?}", p.map(|p| p.as_str().to_owned())),
                Err(e) => format!("{} {e}", e.code().as_u16()),
            };
            let want = match &case.want {
                Want::Allowed(p) => format!("{:?}", p.map(str::to_owned)),
                Want::Rejected(code, message) => format!("{code} {message}"),
            };
            // Where a token was found is the one thing `explain` cannot know.
            let location_dependent =
                matches!(&case.want, Want::Rejected(_, m) if m == "Jwt is missing");
            if explained != want && !location_dependent {
                failures.push(format!(
                    "{} (explain): got {explained}, want {want}",
                    case.desc
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn principal_carries_the_payload_segment() {
    let keys = key_sets();
    let inputs = AuthInputs {
        keys: &keys,
        cache: &NoCache,
        now: NOW,
        skew: DEFAULT_SKEW,
    };
    let good = token(&claims());
    let case = case("", "ListShelves").bearer(&good);
    let (headers, uri) = request(&case);
    let Ok(Allowed {
        principal: Some(principal),
    }) = authenticate(method("ListShelves"), &headers, &uri, &inputs)
    else {
        panic!("should be allowed with a principal");
    };
    assert_eq!(principal.provider().as_str(), "a");
    assert_eq!(principal.issuer(), ISS_A);
    assert_eq!(principal.subject(), Some("user@example.com"));
    assert_eq!(principal.payload_segment(), good.split('.').nth(1).unwrap());
    assert!(!principal.payload_segment().contains('='));
    // The same segment, ready to forward as `x-endpoint-api-userinfo`.
    assert_eq!(
        principal.userinfo().map(|v| v.as_bytes()),
        Some(principal.payload_segment().as_bytes())
    );
    assert_eq!(principal.claims().aud, vec![SERVICE.to_owned()]);
}

#[test]
fn refetch_hint_names_the_provider_for_key_failures_only() {
    let keys = key_sets();
    let without_a = sets(&Keys::Without("a"));
    let run = |keys: &HashMap<ProviderId, Arc<KeySet>>, token: &str| {
        let inputs = AuthInputs {
            keys,
            cache: &NoCache,
            now: NOW,
            skew: Duration::from_secs(60),
        };
        let (headers, uri) = request(&case("", "ListShelves").bearer(token));
        authenticate(method("ListShelves"), &headers, &uri, &inputs).unwrap_err()
    };
    let unknown_kid = run(&keys, &token_by(stranger(), Some("rotated"), &claims()));
    assert_eq!(unknown_kid.refetch_hint().map(|p| p.as_str()), Some("a"));
    assert_eq!(unknown_kid.check_name(), "key");
    let not_fetched = run(&without_a, &token(&claims()));
    assert_eq!(not_fetched.refetch_hint().map(|p| p.as_str()), Some("a"));
    let bad_signature = run(&keys, &tampered(&token(&claims())));
    assert_eq!(bad_signature.refetch_hint(), None);
    assert_eq!(bad_signature.check_name(), "signature");
    let expired = run(&keys, &token(&claims_with(json!({"exp": NOW.0 - 61}))));
    assert_eq!(expired.refetch_hint(), None);
    assert_eq!(expired.check_name(), "time");
}
