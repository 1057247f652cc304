//! `esprit token --impersonate EMAIL`: the IAM Credentials API's client side, as google-auth's
//! `impersonated_credentials` does it. The caller's key file gets an access token with the
//! `iam` scope from its `token_uri` (RFC 7523); that token is the bearer of one call,
//! `generateIdToken` (prints the ID token) or, with `--sign-jwt`, `signJwt` (prints the JWT).
//!
//! The pure parts (URLs, bodies, reading answers and Google's error JSON) are plain functions
//! with tests; [`Impersonation::run`] makes the two HTTP calls.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::token_cmd::{
    GOOGLE_TOKEN_AUDIENCE, http_client, jwt_grant, load_key, runtime, unix_now,
};

/// The scope the caller's access token is asked for (google-auth asks the same).
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// Google's IAM Credentials API.
pub const GOOGLE_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";

/// Google's token endpoint host: a key file naming it impersonates at Google.
const GOOGLE_TOKEN_HOST: &str = "oauth2.googleapis.com";

/// The IAM Credentials base URL for a key file's `token_uri`: Google's API for Google's token
/// endpoint, else the scheme and authority of `token_uri` (esprit's key server answers both
/// `/token` and the IAM Credentials API).
pub fn iam_credentials_base(token_uri: &str) -> anyhow::Result<String> {
    let (scheme, rest) = token_uri
        .split_once("://")
        .filter(|(scheme, _)| *scheme == "http" || *scheme == "https")
        .ok_or_else(|| {
            anyhow!(
                "the key file's token_uri {token_uri:?} is not an http(s) URL; give \
                 --iam-credentials-url"
            )
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        bail!("the key file's token_uri {token_uri:?} has no host; give --iam-credentials-url");
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host == GOOGLE_TOKEN_HOST {
        return Ok(GOOGLE_IAM_CREDENTIALS.to_owned());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// `{base}/v1/projects/-/serviceAccounts/{email}:{method}`.
pub fn call_url(base: &str, email: &str, method: &str) -> String {
    format!(
        "{}/v1/projects/-/serviceAccounts/{}:{method}",
        base.trim_end_matches('/'),
        iam::encode_path_segment(email)
    )
}

/// A delegate as the API names it: `projects/-/serviceAccounts/EMAIL` (an email is
/// completed).
pub fn delegate_name(delegate: &str) -> String {
    if delegate.starts_with("projects/") {
        delegate.to_owned()
    } else {
        iam::roles::resource_name(delegate)
    }
}

/// The generateIdToken body.
pub fn id_token_body(audience: &str, include_email: bool, delegates: &[String]) -> Value {
    json!({
        "audience": audience,
        "includeEmail": include_email,
        "delegates": delegates.iter().map(|d| delegate_name(d)).collect::<Vec<_>>(),
    })
}

/// The signJwt body for `claims` (a JSON object).
pub fn sign_jwt_body(claims: &Value, delegates: &[String]) -> Value {
    json!({
        "payload": claims.to_string(),
        "delegates": delegates.iter().map(|d| delegate_name(d)).collect::<Vec<_>>(),
    })
}

/// The string member `field` of a 200 answer, or an error that says what came back: Google's
/// `{"error": {"code", "message", "status"}}` as `STATUS (CODE): MESSAGE`.
pub fn read_answer(method: &str, status: u16, body: &[u8], field: &str) -> anyhow::Result<String> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status == 200 {
        return parsed
            .as_ref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{method} answered 200 without a string {field:?}"));
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    match error {
        Some(error) => {
            let name = error.get("status").and_then(Value::as_str).unwrap_or("?");
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            bail!("{method} refused: {name} ({status}): {message}")
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let shown: String = text.chars().take(200).collect();
            bail!("{method} refused with HTTP {status}: {shown}")
        }
    }
}

/// The most delegates the API takes.
const MAX_DELEGATES: usize = 10;

/// What to obtain as the target.
pub enum Ask {
    /// generateIdToken.
    IdToken {
        /// The token's `aud`.
        audience: String,
        /// `includeEmail`.
        include_email: bool,
    },
    /// signJwt of these claims (a JSON object).
    SignJwt {
        /// The claims.
        claims: Value,
    },
}

/// One `esprit token --impersonate` run.
pub struct Impersonation<'a> {
    /// The caller's key file.
    pub key_file: &'a Path,
    /// The account to act as.
    pub target: &'a str,
    /// Delegates, in order.
    pub delegates: &'a [String],
    /// `--iam-credentials-url`, else derived from the key file's `token_uri`.
    pub iam_credentials_url: Option<&'a str>,
    /// What to obtain.
    pub ask: Ask,
}

/// The claims of the assertion google-auth's `service_account.Credentials` signs for `scope`.
pub fn access_token_assertion_claims(client_email: &str, scope: &str, now: u64) -> Value {
    json!({
        "iss": client_email,
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "scope": scope,
    })
}

impl Impersonation<'_> {
    /// Gets the caller's access token (the RFC 7523 grant of `--id-token`, with the `iam`
    /// scope), then calls the API; the ID token or signed JWT.
    pub fn run(self) -> anyhow::Result<String> {
        if self.delegates.len() > MAX_DELEGATES {
            bail!("at most {MAX_DELEGATES} --delegate");
        }
        let (key, signer) = load_key(self.key_file)?;
        let assertion = signer
            .sign_jwt(
                Some(&key.private_key_id),
                signer.default_algorithm(),
                &access_token_assertion_claims(&key.client_email, IAM_SCOPE, unix_now()?),
            )
            .context("signing the assertion")?;
        let base = match self.iam_credentials_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => iam_credentials_base(&key.token_uri)?,
        };
        let (method, body, field) = match &self.ask {
            Ask::IdToken {
                audience,
                include_email,
            } => (
                "generateIdToken",
                id_token_body(audience, *include_email, self.delegates),
                "token",
            ),
            Ask::SignJwt { claims } => (
                "signJwt",
                sign_jwt_body(claims, self.delegates),
                "signedJwt",
            ),
        };
        let url = call_url(&base, self.target, method);
        runtime()?.block_on(async {
            let client = http_client()?;
            let answer = jwt_grant(&client, &key.token_uri, &assertion).await?;
            let bearer = answer
                .get("access_token")
                .and_then(Value::as_str)
                .with_context(|| {
                    format!(
                        "the token endpoint {} answered 200 without an access_token",
                        key.token_uri
                    )
                })?;
            let response = client
                .post(&url)
                .bearer_auth(bearer)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .with_context(|| format!("reading the answer of {url}"))?;
            read_answer(method, status, &bytes, field)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iam_credentials_url_follows_the_token_uri() {
        let table: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:8085/token", Some("http://127.0.0.1:8085")),
            (
                "https://iam.example.com/token",
                Some("https://iam.example.com"),
            ),
            (
                "https://iam.example.com:8443/x/token?a=b",
                Some("https://iam.example.com:8443"),
            ),
            (
                "https://oauth2.googleapis.com/token",
                Some(GOOGLE_IAM_CREDENTIALS),
            ),
            ("http://[::1]:9/token", Some("http://[::1]:9")),
            ("ftp://x/token", None),
            ("token", None),
            ("http:///token", None),
        ];
        for (uri, want) in table {
            assert_eq!(iam_credentials_base(uri).ok().as_deref(), *want, "{uri}");
        }
    }

    #[test]
    fn urls_and_bodies() {
        let email = "target-one@my-project.iam.gserviceaccount.com";
        assert_eq!(
            call_url("http://127.0.0.1:9/", email, "generateIdToken"),
            "http://127.0.0.1:9/v1/projects/-/serviceAccounts/\
             target-one%40my-project.iam.gserviceaccount.com:generateIdToken"
        );
        let delegates = vec![
            "d-one@p-roject.iam.gserviceaccount.com".to_owned(),
            "projects/-/serviceAccounts/d-two@p-roject.iam.gserviceaccount.com".to_owned(),
        ];
        assert_eq!(
            id_token_body("aud", true, &delegates),
            json!({"audience": "aud", "includeEmail": true, "delegates": [
                "projects/-/serviceAccounts/d-one@p-roject.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/d-two@p-roject.iam.gserviceaccount.com"]})
        );
        let body = sign_jwt_body(&json!({"iss": email, "exp": 5}), &[]);
        let payload: Value = serde_json::from_str(body["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({"iss": email, "exp": 5}));
        assert_eq!(body["delegates"], json!([]));
    }

    #[test]
    fn the_grant_is_google_auths() {
        let email = "caller-one@my-project.iam.gserviceaccount.com";
        assert_eq!(
            access_token_assertion_claims(email, IAM_SCOPE, 1000),
            json!({"iss": email, "aud": "https://oauth2.googleapis.com/token", "iat": 1000,
                   "exp": 4600, "scope": "https://www.googleapis.com/auth/iam"})
        );
    }

    #[test]
    fn answers_and_googles_errors() {
        assert_eq!(
            read_answer("generateIdToken", 200, br#"{"token": "a.b.c"}"#, "token").unwrap(),
            "a.b.c"
        );
        let err = read_answer("signJwt", 200, br#"{"x": 1}"#, "signedJwt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "signJwt answered 200 without a string \"signedJwt\""
        );
        let denied = br#"{"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).", "status": "PERMISSION_DENIED"}}"#;
        let err = read_answer("generateIdToken", 403, denied, "token").unwrap_err();
        assert_eq!(
            err.to_string(),
            "generateIdToken refused: PERMISSION_DENIED (403): Permission \
             'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist)."
        );
        let err = read_answer("signJwt", 502, b"bad gateway", "signedJwt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "signJwt refused with HTTP 502: bad gateway"
        );
    }
}
