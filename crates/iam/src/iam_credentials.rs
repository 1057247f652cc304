//! The IAM Credentials API's requests, read and checked without I/O: paths, bodies, lifetimes
//! and the claims of `signJwt`. The key server's handlers (`server/iam_credentials.rs`) only
//! read the body, look up, sign and answer.
//!
//! `POST /v1/projects/-/serviceAccounts/{email}:{method}`, JSON bodies as Google's:
//! - `generateIdToken`: `{"audience", "includeEmail", "delegates", "useEmailAzp"}`;
//! - `generateAccessToken`: `{"scope", "lifetime", "delegates"}`;
//! - `signJwt`: `{"payload", "delegates"}`.
//!
//! Unknown members are refused, as Google's front end refuses them. Booleans may be JSON
//! booleans or the strings `"true"`/`"false"` (proto3 JSON; google-auth sends both).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::ids::decode_path_segment;
use crate::roles::{RESOURCE_PREFIX, parse_resource};

/// The largest request body accepted, bytes (a signJwt payload is the largest body).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The most delegates a request may name.
pub const MAX_DELEGATES: usize = 10;

/// The most scopes a generateAccessToken request may name.
pub const MAX_SCOPES: usize = 64;

/// generateAccessToken's lifetime when none is given, and the longest allowed (Google's
/// default maximum; Google lets an organization policy raise it to 12 h, esprit does not).
pub const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How far in the future signJwt accepts an `exp` claim (Google: 12 hours).
pub const MAX_SIGN_JWT_EXP_AHEAD_SECS: u64 = 12 * 3600;

/// The `exp` signJwt adds when the payload has none: 1 hour after now (as Google does).
pub const SIGN_JWT_DEFAULT_LIFETIME_SECS: u64 = 3600;

const PATH_PREFIX: &str = "/v1/projects/";
const ACCOUNTS_SEGMENT: &str = "/serviceAccounts/";

/// One of the API's methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `:generateIdToken`.
    GenerateIdToken,
    /// `:generateAccessToken`.
    GenerateAccessToken,
    /// `:signJwt`.
    SignJwt,
}

impl Method {
    /// The name after `:` in the path.
    pub fn name(self) -> &'static str {
        match self {
            Method::GenerateIdToken => "generateIdToken",
            Method::GenerateAccessToken => "generateAccessToken",
            Method::SignJwt => "signJwt",
        }
    }

    /// The IAM permission Google checks for it (all granted by the Token Creator role).
    pub fn permission(self) -> &'static str {
        match self {
            Method::GenerateIdToken => "iam.serviceAccounts.getOpenIdToken",
            Method::GenerateAccessToken => "iam.serviceAccounts.getAccessToken",
            Method::SignJwt => "iam.serviceAccounts.signJwt",
        }
    }

    /// The 403 message, Google's: it does not say whether the account exists.
    pub fn denied_message(self) -> String {
        format!(
            "Permission '{}' denied on resource (or it may not exist).",
            self.permission()
        )
    }
}

/// A request path of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPath {
    /// The project segment (Google requires `-`).
    pub project: String,
    /// The target account as written (percent-decoded): an email, or anything else, which no
    /// binding names.
    pub account: String,
    /// The method.
    pub method: Method,
}

/// The call named by `path`, or `None` when the path is not one of the API's
/// (`/v1/projects/{project}/serviceAccounts/{account}:{method}`, a known method).
pub fn parse_path(path: &str) -> Option<CallPath> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (project, rest) = rest.split_once(ACCOUNTS_SEGMENT)?;
    if project.is_empty() || project.contains('/') || rest.contains('/') {
        return None;
    }
    let (account, method) = rest.rsplit_once(':')?;
    let method = [
        Method::GenerateIdToken,
        Method::GenerateAccessToken,
        Method::SignJwt,
    ]
    .into_iter()
    .find(|m| m.name() == method)?;
    let account = decode_path_segment(account).filter(|a| !a.is_empty())?;
    Some(CallPath {
        project: decode_path_segment(project)?,
        account,
        method,
    })
}

/// A request the API refuses with 400 `INVALID_ARGUMENT`; the message is shown to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// The message for a project segment other than `-`.
pub const WILDCARD_REQUIRED: &str =
    "The `-` wildcard character is required for the project: use projects/-/serviceAccounts/EMAIL";

/// A generateIdToken request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTokenRequest {
    /// The token's `aud`.
    pub audience: String,
    /// Whether the token carries `email` and `email_verified`.
    pub include_email: bool,
    /// The delegates' account emails, in order.
    pub delegates: Vec<String>,
    /// `useEmailAzp`: the token's `azp` is the account's email instead of its unique id.
    pub use_email_azp: bool,
}

/// A generateAccessToken request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRequest {
    /// The scopes, at least one.
    pub scopes: Vec<String>,
    /// The lifetime, whole seconds, 1 s to [`MAX_ACCESS_TOKEN_LIFETIME`].
    pub lifetime: Duration,
    /// The delegates' account emails, in order.
    pub delegates: Vec<String>,
}

/// A signJwt request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignJwtRequest {
    /// The claims to sign (with `exp` added when the payload had none).
    pub claims: Map<String, Value>,
    /// The delegates' account emails, in order.
    pub delegates: Vec<String>,
}

/// The body as a JSON object whose members are all in `known`.
fn object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, BadRequest> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| bad(format!("Invalid JSON payload received: {err}")))?;
    let Value::Object(map) = value else {
        return Err(bad(
            "Invalid JSON payload received: the body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(format!(
            "Invalid JSON payload received. Unknown name {unknown:?}: Cannot find field."
        )));
    }
    Ok(map)
}

/// A member absent or `null` is `None`.
fn member<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

/// A boolean member: `true`/`false` or `"true"`/`"false"`; absent or null is `false`.
fn boolean(map: &Map<String, Value>, name: &str) -> Result<bool, BadRequest> {
    match member(map, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(bad(format!(
            "Invalid value for {name}: {other}: expected true or false"
        ))),
    }
}

/// `delegates`: absent, null or a list of `projects/-/serviceAccounts/EMAIL`; the emails.
fn delegates(map: &Map<String, Value>) -> Result<Vec<String>, BadRequest> {
    let Some(value) = member(map, "delegates") else {
        return Ok(Vec::new());
    };
    let Value::Array(list) = value else {
        return Err(bad(
            "Invalid value for delegates: expected a list of projects/-/serviceAccounts/EMAIL",
        ));
    };
    if list.len() > MAX_DELEGATES {
        return Err(bad(format!(
            "Too many delegates: {} (at most {MAX_DELEGATES})",
            list.len()
        )));
    }
    list.iter()
        .map(|item| {
            let name = item.as_str().unwrap_or_default();
            if !name.starts_with(RESOURCE_PREFIX) {
                return Err(bad(format!(
                    "Invalid delegate {item}: expected projects/-/serviceAccounts/EMAIL"
                )));
            }
            parse_resource(name).map_err(|err| bad(format!("Invalid delegate: {err}")))
        })
        .collect()
}

/// Reads a generateIdToken body.
pub fn id_token_request(body: &[u8]) -> Result<IdTokenRequest, BadRequest> {
    let map = object(
        body,
        &["audience", "includeEmail", "delegates", "useEmailAzp"],
    )?;
    let audience = match member(&map, "audience") {
        Some(Value::String(a)) if !a.trim().is_empty() => a.clone(),
        Some(Value::String(_)) | None => return Err(bad("audience is required")),
        Some(other) => return Err(bad(format!("Invalid value for audience: {other}"))),
    };
    Ok(IdTokenRequest {
        audience,
        include_email: boolean(&map, "includeEmail")?,
        delegates: delegates(&map)?,
        use_email_azp: boolean(&map, "useEmailAzp")?,
    })
}

/// Reads a generateAccessToken body.
pub fn access_token_request(body: &[u8]) -> Result<AccessTokenRequest, BadRequest> {
    let map = object(body, &["scope", "lifetime", "delegates"])?;
    let scopes = match member(&map, "scope") {
        None => return Err(bad("scope is required: a non-empty list of OAuth scopes")),
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| match s.as_str() {
                Some(s) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => {
                    Ok(s.to_owned())
                }
                _ => Err(bad(format!(
                    "Invalid scope {s}: expected a non-empty string"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "Invalid value for scope: {other}: expected a list of OAuth scopes"
            )));
        }
    };
    if scopes.is_empty() {
        return Err(bad("scope is required: a non-empty list of OAuth scopes"));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(bad(format!(
            "Too many scopes: {} (at most {MAX_SCOPES})",
            scopes.len()
        )));
    }
    let lifetime = match member(&map, "lifetime") {
        None => MAX_ACCESS_TOKEN_LIFETIME,
        Some(Value::String(text)) => parse_lifetime(text)?,
        Some(other) => {
            return Err(bad(format!(
                "Invalid value for lifetime: {other}: expected a duration such as \"3600s\""
            )));
        }
    };
    Ok(AccessTokenRequest {
        scopes,
        lifetime,
        delegates: delegates(&map)?,
    })
}

/// Google's duration string (`"3600s"`, `"1.5s"`) as whole seconds (a fraction is dropped),
/// 1 s to [`MAX_ACCESS_TOKEN_LIFETIME`].
pub fn parse_lifetime(text: &str) -> Result<Duration, BadRequest> {
    let invalid = || {
        bad(format!(
            "Invalid value for lifetime: {text:?}: expected a duration such as \"3600s\""
        ))
    };
    let number = text.strip_suffix('s').ok_or_else(invalid)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return Err(invalid());
    }
    // More digits than any lifetime allowed has: too long (and no overflow).
    let seconds = if whole.len() > 12 {
        u64::MAX
    } else {
        whole.parse::<u64>().map_err(|_| invalid())?
    };
    let max = MAX_ACCESS_TOKEN_LIFETIME.as_secs();
    if seconds > max || (seconds == max && fraction.bytes().any(|b| b != b'0')) {
        return Err(bad(format!(
            "The lifetime requested ({text}) is greater than the maximum allowed ({max}s)"
        )));
    }
    if seconds == 0 {
        return Err(bad(format!(
            "The lifetime requested ({text}) is too short: at least 1s"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// Reads a signJwt body at `now` (seconds since the epoch): the payload must be a JSON object;
/// an `exp` claim must be an integer, not in the past, at most 12 h ahead; without one, `exp`
/// = now + 1 h is added (Google's rules).
pub fn sign_jwt_request(body: &[u8], now: u64) -> Result<SignJwtRequest, BadRequest> {
    let map = object(body, &["payload", "delegates"])?;
    let payload = match member(&map, "payload") {
        Some(Value::String(p)) => p,
        None => {
            return Err(bad(
                "payload is required: a JSON object serialized as a string",
            ));
        }
        Some(other) => {
            return Err(bad(format!(
                "Invalid value for payload: {other}: expected a JSON object serialized as a \
                 string"
            )));
        }
    };
    let mut claims = match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(claims)) => claims,
        Ok(_) => {
            return Err(bad(
                "Invalid payload: it must be a JSON object (a claim set)",
            ));
        }
        Err(err) => return Err(bad(format!("Invalid payload: not JSON: {err}"))),
    };
    match claims.get("exp") {
        None => {
            claims.insert("exp".into(), (now + SIGN_JWT_DEFAULT_LIFETIME_SECS).into());
        }
        Some(exp) => {
            let Some(exp) = exp.as_u64() else {
                return Err(bad(format!(
                    "Invalid payload: exp {exp} must be an integer timestamp"
                )));
            };
            if exp < now {
                return Err(bad(format!(
                    "Invalid payload: exp {exp} is in the past (now {now})"
                )));
            }
            if exp > now + MAX_SIGN_JWT_EXP_AHEAD_SECS {
                return Err(bad(format!(
                    "Invalid payload: exp {exp} is more than 12 hours in the future (now {now})"
                )));
            }
        }
    }
    Ok(SignJwtRequest {
        claims,
        delegates: delegates(&map)?,
    })
}

/// The scopes of which a caller's access token needs one (Google's: the IAM Credentials API
/// takes `iam` or `cloud-platform`).
pub const CALLER_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/iam",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// Why a request is not authenticated (401 `UNAUTHENTICATED`, Google's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer that is not a valid, unexpired access token of an existing account.
    Invalid,
}

impl Unauthenticated {
    /// The message the caller sees.
    pub fn message(self) -> &'static str {
        match self {
            Unauthenticated::Missing => {
                "Request is missing required authentication credential. Expected OAuth 2 access \
                 token, login cookie or other valid authentication credential."
            }
            Unauthenticated::Invalid => {
                "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential."
            }
        }
    }
}

/// The longest bearer token looked up; a longer one is invalid without a lookup.
pub const MAX_BEARER_LEN: usize = 4096;

/// The token of an `Authorization: Bearer TOKEN` header value (scheme in any case).
pub fn bearer(authorization: Option<&[u8]>) -> Result<&str, Unauthenticated> {
    let value = authorization.ok_or(Unauthenticated::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| Unauthenticated::Invalid)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Unauthenticated::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Unauthenticated::Missing);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_BEARER_LEN {
        return Err(Unauthenticated::Invalid);
    }
    Ok(token)
}

/// Whether a caller's access token, issued for `scopes`, may call the API.
pub fn has_caller_scope(scopes: &[String]) -> bool {
    scopes.iter().any(|s| CALLER_SCOPES.contains(&s.as_str()))
}

/// The 403 message for a token without [`CALLER_SCOPES`] (Google's).
pub const INSUFFICIENT_SCOPES: &str = "Request had insufficient authentication scopes.";

/// `expireTime`: `%Y-%m-%dT%H:%M:%SZ`, whole seconds in UTC (what google-auth parses).
pub fn expire_time(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

#[cfg(test)]
mod tests;
