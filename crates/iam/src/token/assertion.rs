//! The token endpoint's decision: an RFC 7523 JWT-bearer request → a grant, or a typed refusal.
//!
//! Pure: the request body, the account's keys (looked up by the caller from the assertion's
//! unverified `iss`), the issuer URL and `now` are arguments. Checks run in this order: form
//! (`grant_type`, `assertion`), JWT syntax, `iss` names an account, `kid` names one of its
//! published keys, signature (the algorithm comes from the key), `aud`, time (`iat`, `exp`,
//! lifetime), `sub`, then the grant (`target_audience` xor `scope`). No claim is trusted before
//! the signature verified.

use std::borrow::Cow;

use jose::{Jwt, KeySet, KeySource};
use serde_json::Value;

use crate::model::StoredKey;
use crate::render;

/// Why a JWT does not verify with a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyMismatch {
    /// No stored key among the candidates (or it cannot be rendered as a key set).
    UnknownKey,
    /// No valid signature by it: a wrong signature, or the key's algorithm is not the token's.
    BadSignature,
}

/// Verifies `jwt`'s signature with the stored key among `candidates` (those its `kid` and
/// issuer name): the key as a one-key JWKS with its `alg`, so jose takes the algorithm from the
/// key, never from the token. Shared by the token endpoint's assertions and key-server callers.
pub(crate) fn verify_with_stored_key<'a>(
    jwt: &Jwt,
    candidates: impl Iterator<Item = &'a StoredKey>,
) -> Result<(), KeyMismatch> {
    let key: Vec<StoredKey> = candidates.cloned().collect();
    if key.is_empty() {
        return Err(KeyMismatch::UnknownKey);
    }
    let set = render::jwks(&key)
        .ok()
        .and_then(|doc| KeySet::parse(doc.as_bytes(), KeySource::Remote).ok())
        .ok_or(KeyMismatch::UnknownKey)?;
    jose::verify(jwt.jws(), &set)
        .map(|_| ())
        .map_err(|_| KeyMismatch::BadSignature)
}

/// The only grant type: RFC 7523's JWT bearer.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The audience google-auth always puts in assertions, whatever the key file's `token_uri`.
pub const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

/// The most an assertion may live (`exp - iat`), seconds: Google's 1 h.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

/// Clock skew allowed on `iat` (not in the future beyond it) and `exp` (not past beyond it),
/// seconds.
pub const ASSERTION_SKEW_SECS: u64 = 60;

/// The largest request body the token endpoint reads, bytes (an assertion is a few KiB).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// Why a token request is refused. Each maps to an OAuth error code ([`Refusal::error`],
/// RFC 6749 §5.2) and a description ([`Refusal::description`]); both are a contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a form, or a parameter is repeated.
    MalformedRequest,
    /// No `grant_type`.
    MissingGrantType,
    /// A `grant_type` other than the JWT bearer.
    UnsupportedGrantType,
    /// No `assertion`.
    MissingAssertion,
    /// The assertion is not a JWT (this crate's parse error).
    MalformedAssertion(String),
    /// No `iss` claim.
    MissingIssuer,
    /// `iss` names no account.
    UnknownAccount,
    /// The header has no `kid`.
    MissingKid,
    /// `kid` names none of the account's published keys (unknown, disabled or deleted).
    UnknownKey,
    /// The signature does not verify with the key.
    BadSignature,
    /// `aud` is not the token endpoint.
    WrongAudience,
    /// `iat` or `exp` is missing.
    MissingTimes,
    /// `exp` is past (beyond the skew).
    Expired,
    /// `iat` is in the future (beyond the skew).
    IssuedInFuture,
    /// `exp - iat` is over an hour (or negative).
    LifetimeTooLong,
    /// `sub` differs from `iss` (domain-wide delegation, which esprit does not do).
    Delegation,
    /// Both `target_audience` and `scope`.
    BothAudienceAndScope,
    /// `target_audience` is not a non-empty string.
    BadTargetAudience,
    /// Neither `target_audience` nor a non-empty `scope`.
    MissingScope,
}

impl Refusal {
    /// The OAuth `error` code (RFC 6749 §5.2); none is a code google-auth retries.
    pub fn error(&self) -> &'static str {
        match self {
            Refusal::MalformedRequest
            | Refusal::MissingGrantType
            | Refusal::MissingAssertion
            | Refusal::BothAudienceAndScope
            | Refusal::BadTargetAudience => "invalid_request",
            Refusal::UnsupportedGrantType => "unsupported_grant_type",
            Refusal::MissingScope => "invalid_scope",
            Refusal::MalformedAssertion(_)
            | Refusal::MissingIssuer
            | Refusal::UnknownAccount
            | Refusal::MissingKid
            | Refusal::UnknownKey
            | Refusal::BadSignature
            | Refusal::WrongAudience
            | Refusal::MissingTimes
            | Refusal::Expired
            | Refusal::IssuedInFuture
            | Refusal::LifetimeTooLong
            | Refusal::Delegation => "invalid_grant",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::MalformedRequest => {
                "the body must be application/x-www-form-urlencoded, each parameter once"
            }
            Refusal::MissingGrantType => "grant_type is required",
            Refusal::UnsupportedGrantType => {
                "only grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer is supported"
            }
            Refusal::MissingAssertion => "assertion is required",
            Refusal::MalformedAssertion(why) => {
                return Cow::Owned(format!("Invalid JWT: {why}"));
            }
            Refusal::MissingIssuer => "Invalid JWT: iss is required",
            Refusal::UnknownAccount => "Invalid grant: account not found",
            Refusal::MissingKid => "Invalid JWT: the header must name the key (kid)",
            Refusal::UnknownKey => {
                "Invalid JWT Signature: kid is not an enabled key of the account"
            }
            Refusal::BadSignature => "Invalid JWT Signature.",
            Refusal::WrongAudience => {
                "Invalid JWT: aud must be https://oauth2.googleapis.com/token or this token endpoint"
            }
            Refusal::MissingTimes => "Invalid JWT: iat and exp are required",
            Refusal::Expired | Refusal::IssuedInFuture | Refusal::LifetimeTooLong => {
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim."
            }
            Refusal::Delegation => {
                "Invalid JWT: sub must be absent or equal to iss (no delegation)"
            }
            Refusal::BothAudienceAndScope => {
                "the assertion may carry target_audience or scope, not both"
            }
            Refusal::BadTargetAudience => "target_audience must be a non-empty string",
            Refusal::MissingScope => "Empty or missing scope not allowed.",
        })
    }
}

/// What a verified assertion asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// An ID token for this audience.
    IdToken {
        /// `target_audience`.
        audience: String,
    },
    /// An access token with these scopes.
    AccessToken {
        /// `scope`, split on blanks.
        scopes: Vec<String>,
    },
}

/// A token request whose form is well made and whose assertion parses (nothing verified yet).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    jwt: Jwt,
}

impl TokenRequest {
    /// The assertion's `iss`, unverified: whose keys the caller should look up.
    pub fn issuer(&self) -> Option<&str> {
        self.jwt.claims().iss.as_deref()
    }
}

/// Parses the form body: exactly one `grant_type` (the JWT bearer) and one `assertion` (a JWT).
pub fn parse_request(body: &[u8]) -> Result<TokenRequest, Refusal> {
    if std::str::from_utf8(body).is_err() {
        return Err(Refusal::MalformedRequest);
    }
    let mut grant_type = None;
    let mut assertion = None;
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "grant_type" => &mut grant_type,
            "assertion" => &mut assertion,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(Refusal::MalformedRequest);
        }
    }
    match grant_type.as_deref() {
        None | Some("") => return Err(Refusal::MissingGrantType),
        Some(JWT_BEARER) => {}
        Some(_) => return Err(Refusal::UnsupportedGrantType),
    }
    let assertion = assertion
        .filter(|a| !a.is_empty())
        .ok_or(Refusal::MissingAssertion)?;
    let jwt = Jwt::parse(&assertion).map_err(|e| Refusal::MalformedAssertion(e.to_string()))?;
    Ok(TokenRequest { jwt })
}

/// Verifies the assertion of `request` against `keys` (the published keys of the account its
/// `iss` names; `None` when there is no such account) and says what it grants.
/// `token_endpoint` is `{issuer}/token`, accepted as `aud` besides [`GOOGLE_TOKEN_AUDIENCE`].
pub fn check_assertion(
    request: &TokenRequest,
    keys: Option<&[StoredKey]>,
    token_endpoint: &str,
    now: u64,
) -> Result<Grant, Refusal> {
    let jwt = &request.jwt;
    let claims = jwt.claims();
    let iss = claims.iss.as_deref().ok_or(Refusal::MissingIssuer)?;
    let keys = keys.ok_or(Refusal::UnknownAccount)?;
    let kid = jwt.header().kid.as_ref().ok_or(Refusal::MissingKid)?;
    verify_with_stored_key(jwt, keys.iter().filter(|k| k.key_id == kid.as_str())).map_err(
        |err| match err {
            KeyMismatch::UnknownKey => Refusal::UnknownKey,
            KeyMismatch::BadSignature => Refusal::BadSignature,
        },
    )?;
    if claims.aud.len() != 1
        || !(claims.aud[0] == GOOGLE_TOKEN_AUDIENCE || claims.aud[0] == token_endpoint)
    {
        return Err(Refusal::WrongAudience);
    }
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err(Refusal::MissingTimes);
    };
    if now > exp.0.saturating_add(ASSERTION_SKEW_SECS) {
        return Err(Refusal::Expired);
    }
    if iat.0 > now.saturating_add(ASSERTION_SKEW_SECS) {
        return Err(Refusal::IssuedInFuture);
    }
    if exp.0 < iat.0 || exp.0 - iat.0 > MAX_ASSERTION_LIFETIME_SECS {
        return Err(Refusal::LifetimeTooLong);
    }
    if claims.sub.as_deref().is_some_and(|sub| sub != iss) {
        return Err(Refusal::Delegation);
    }
    let target_audience = claims.all.get("target_audience");
    let scope = claims.all.get("scope");
    match (target_audience, scope) {
        (Some(_), Some(_)) => Err(Refusal::BothAudienceAndScope),
        (Some(Value::String(audience)), None) if !audience.is_empty() => Ok(Grant::IdToken {
            audience: audience.clone(),
        }),
        (Some(_), None) => Err(Refusal::BadTargetAudience),
        (None, Some(Value::String(scope))) => {
            let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
            if scopes.is_empty() {
                Err(Refusal::MissingScope)
            } else {
                Ok(Grant::AccessToken { scopes })
            }
        }
        (None, _) => Err(Refusal::MissingScope),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::keyfile::new_key;
    use crate::model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus};

    const NOW: u64 = 1_800_000_000;
    const ENDPOINT: &str = "http://iam.test/token";
    const EMAIL: &str = "caller-one@my-project.iam.gserviceaccount.com";

    fn account() -> Account {
        Account {
            email: EMAIL.into(),
            account_id: "caller-one".into(),
            project_id: "my-project".into(),
            unique_id: "100000000000000000001".into(),
            created: 0,
        }
    }

    fn form(assertion: &str) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER)
            .append_pair("assertion", assertion)
            .finish()
            .into_bytes()
    }

    #[test]
    fn assertions() {
        let rsa = new_key(&account(), KeyAlgorithm::Rs256, &KeyServerUrl::default(), 0).unwrap();
        let ec = new_key(&account(), KeyAlgorithm::Es256, &KeyServerUrl::default(), 0).unwrap();
        let signer = jose::Signer::from_service_account(&rsa.key_file).unwrap();
        let ec_signer = jose::Signer::from_service_account(&ec.key_file).unwrap();
        let kid = rsa.stored.key_id.clone();
        let keys = vec![rsa.stored.clone(), ec.stored.clone()];
        let mut disabled = rsa.stored.clone();
        disabled.state = KeyStatus::Disabled;
        let base = json!({"iss": EMAIL, "aud": GOOGLE_TOKEN_AUDIENCE, "iat": NOW, "exp": NOW + 3600,
                          "target_audience": "svc"});
        let with = |changes: serde_json::Value| {
            let mut claims = base.clone();
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            claims
        };
        let sign = |claims: &serde_json::Value| {
            signer
                .sign_jwt(Some(&kid), jose::Algorithm::RS256, claims)
                .unwrap()
        };
        let id = |aud: &str| {
            Ok(Grant::IdToken {
                audience: aud.into(),
            })
        };
        /// Description, assertion, the account's keys (None: no account), expected decision.
        type Case = (
            &'static str,
            String,
            Option<Vec<StoredKey>>,
            Result<Grant, Refusal>,
        );
        let cases: Vec<Case> = vec![
            (
                "google-auth's ID token assertion",
                sign(&base),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "the token endpoint as aud",
                sign(&with(json!({"aud": ENDPOINT}))),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "ES256 key file",
                ec_signer
                    .sign_jwt(Some(&ec.stored.key_id), jose::Algorithm::ES256, &base)
                    .unwrap(),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "scopes",
                sign(&with(json!({"target_audience": null, "scope": "a  b"}))),
                Some(keys.clone()),
                Ok(Grant::AccessToken {
                    scopes: vec!["a".into(), "b".into()],
                }),
            ),
            (
                "sub = iss",
                sign(&with(json!({"sub": EMAIL}))),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "skew: exp 60 s past",
                sign(&with(json!({"iat": NOW - 3660, "exp": NOW - 60}))),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "exp 61 s past",
                sign(&with(json!({"iat": NOW - 3661, "exp": NOW - 61}))),
                Some(keys.clone()),
                Err(Refusal::Expired),
            ),
            (
                "skew: iat 60 s ahead",
                sign(&with(json!({"iat": NOW + 60, "exp": NOW + 3660}))),
                Some(keys.clone()),
                id("svc"),
            ),
            (
                "iat 61 s ahead",
                sign(&with(json!({"iat": NOW + 61, "exp": NOW + 3661}))),
                Some(keys.clone()),
                Err(Refusal::IssuedInFuture),
            ),
            (
                "lifetime 3601 s",
                sign(&with(json!({"exp": NOW + 3601}))),
                Some(keys.clone()),
                Err(Refusal::LifetimeTooLong),
            ),
            (
                "exp before iat",
                sign(&with(json!({"iat": NOW, "exp": NOW - 1}))),
                Some(keys.clone()),
                Err(Refusal::LifetimeTooLong),
            ),
            (
                "no iat",
                sign(&with(json!({"iat": null}))),
                Some(keys.clone()),
                Err(Refusal::MissingTimes),
            ),
            (
                "no iss",
                sign(&with(json!({"iss": null}))),
                Some(keys.clone()),
                Err(Refusal::MissingIssuer),
            ),
            (
                "unknown account",
                sign(&base),
                None,
                Err(Refusal::UnknownAccount),
            ),
            (
                "no kid",
                signer
                    .sign_jwt(None, jose::Algorithm::RS256, &base)
                    .unwrap(),
                Some(keys.clone()),
                Err(Refusal::MissingKid),
            ),
            (
                "disabled key",
                sign(&base),
                Some(vec![disabled]),
                Err(Refusal::UnknownKey),
            ),
            (
                "kid of another algorithm's key",
                ec_signer
                    .sign_jwt(Some(&kid), jose::Algorithm::ES256, &base)
                    .unwrap(),
                Some(keys.clone()),
                Err(Refusal::BadSignature),
            ),
            (
                "wrong aud",
                sign(&with(json!({"aud": "https://elsewhere/token"}))),
                Some(keys.clone()),
                Err(Refusal::WrongAudience),
            ),
            (
                "two auds",
                sign(&with(json!({"aud": [GOOGLE_TOKEN_AUDIENCE, ENDPOINT]}))),
                Some(keys.clone()),
                Err(Refusal::WrongAudience),
            ),
            (
                "delegation",
                sign(&with(json!({"sub": "user@example.com"}))),
                Some(keys.clone()),
                Err(Refusal::Delegation),
            ),
            (
                "both grants",
                sign(&with(json!({"scope": "a"}))),
                Some(keys.clone()),
                Err(Refusal::BothAudienceAndScope),
            ),
            (
                "empty target_audience",
                sign(&with(json!({"target_audience": ""}))),
                Some(keys.clone()),
                Err(Refusal::BadTargetAudience),
            ),
            (
                "numeric target_audience",
                sign(&with(json!({"target_audience": 3}))),
                Some(keys.clone()),
                Err(Refusal::BadTargetAudience),
            ),
            (
                "blank scope",
                sign(&with(json!({"target_audience": null, "scope": " "}))),
                Some(keys.clone()),
                Err(Refusal::MissingScope),
            ),
            (
                "neither",
                sign(&with(json!({"target_audience": null}))),
                Some(keys.clone()),
                Err(Refusal::MissingScope),
            ),
        ];
        for (desc, assertion, keys, want) in cases {
            let request = parse_request(&form(&assertion)).unwrap();
            let got = check_assertion(&request, keys.as_deref(), ENDPOINT, NOW);
            assert_eq!(got, want, "{desc}");
        }
        // Every bit of the signature matters.
        let token = sign(&base);
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        for i in (0..bytes.len() * 8).step_by(97) {
            bytes[i / 8] ^= 1 << (i % 8);
            let tampered = format!(
                "{head}.{}",
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &bytes)
            );
            bytes[i / 8] ^= 1 << (i % 8);
            let request = parse_request(&form(&tampered)).unwrap();
            assert_eq!(
                check_assertion(&request, Some(&keys), ENDPOINT, NOW),
                Err(Refusal::BadSignature),
                "bit {i}"
            );
        }
    }

    #[test]
    fn forms() {
        let ok = form("a.b.c");
        assert!(matches!(
            parse_request(&ok),
            Err(Refusal::MalformedAssertion(_))
        ));
        let table: &[(&[u8], Refusal)] = &[
            (b"", Refusal::MissingGrantType),
            (b"assertion=x", Refusal::MissingGrantType),
            (
                b"grant_type=client_credentials&assertion=x",
                Refusal::UnsupportedGrantType,
            ),
            (
                b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
                Refusal::MissingAssertion,
            ),
            (
                b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
                Refusal::MissingAssertion,
            ),
            (
                b"grant_type=a&grant_type=b&assertion=x",
                Refusal::MalformedRequest,
            ),
            (b"grant_type=\xff", Refusal::MalformedRequest),
        ];
        for (body, want) in table {
            assert_eq!(
                parse_request(body).unwrap_err(),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn oauth_codes_and_descriptions() {
        let table = [
            (Refusal::MalformedRequest, "invalid_request"),
            (Refusal::MissingGrantType, "invalid_request"),
            (Refusal::UnsupportedGrantType, "unsupported_grant_type"),
            (Refusal::MissingAssertion, "invalid_request"),
            (Refusal::MalformedAssertion("x".into()), "invalid_grant"),
            (Refusal::MissingIssuer, "invalid_grant"),
            (Refusal::UnknownAccount, "invalid_grant"),
            (Refusal::MissingKid, "invalid_grant"),
            (Refusal::UnknownKey, "invalid_grant"),
            (Refusal::BadSignature, "invalid_grant"),
            (Refusal::WrongAudience, "invalid_grant"),
            (Refusal::MissingTimes, "invalid_grant"),
            (Refusal::Expired, "invalid_grant"),
            (Refusal::IssuedInFuture, "invalid_grant"),
            (Refusal::LifetimeTooLong, "invalid_grant"),
            (Refusal::Delegation, "invalid_grant"),
            (Refusal::BothAudienceAndScope, "invalid_request"),
            (Refusal::BadTargetAudience, "invalid_request"),
            (Refusal::MissingScope, "invalid_scope"),
        ];
        // google-auth retries these; no refusal may use them.
        let retried = [
            "internal_failure",
            "server_error",
            "temporarily_unavailable",
        ];
        for (refusal, code) in table {
            assert_eq!(refusal.error(), code, "{refusal:?}");
            assert!(!retried.contains(&refusal.error()));
            let description = refusal.description();
            assert!(!description.is_empty());
            assert!(
                !retried.iter().any(|r| description.contains(r)),
                "{refusal:?}"
            );
        }
        assert_eq!(
            Refusal::MalformedAssertion("Jwt is not in the form".into()).description(),
            "Invalid JWT: Jwt is not in the form"
        );
    }
}
