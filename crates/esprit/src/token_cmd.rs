//! `esprit token`: mints a JWT with a Google service-account key file, as the ESP tutorial's
//! Python tool does, so that a token from either passes the proxy.
//!
//! Header: `alg` from the key (RS256 for RSA, ES256 for P-256), `typ: "JWT"`, `kid` = the key
//! file's `private_key_id`. Claims: `iat`, `exp` = `iat` + `--lifetime`, `aud`, `iss`, `sub`,
//! `email`, then the `--claim` extras. `--claim` may not set a claim that has its own flag
//! (`iat`, `exp`, `aud`, `iss`, `sub`, `email`): those are refused, so that no extra silently
//! changes what the flags say.
//!
//! With `--id-token --target-audience AUD` (like `gcloud auth print-identity-token`) it does not
//! mint the token itself: it signs an RFC 7523 assertion as google-auth does (`aud`
//! `https://oauth2.googleapis.com/token`, 1 h, `target_audience`), POSTs it to the key file's
//! `token_uri` (or `--token-uri`), e.g. the token service of `esprit iam serve --issuer-url`,
//! and prints the ID token it answers.
//!
//! Subcommands (`esprit token inspect TOKEN`) go in [`TokenCommand`]; without
//! one, the flags mint a token (`args_conflicts_with_subcommands`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::duration;

/// Claims set by their own flags; `--claim` may not set them.
const RESERVED: [(&str, &str); 6] = [
    ("iat", "it is the time of minting"),
    ("exp", "use --lifetime"),
    ("aud", "use --audiences"),
    ("iss", "use --issuer"),
    ("sub", "use --subject"),
    ("email", "use --email"),
];

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: Option<TokenCommand>,
    #[command(flatten)]
    // An Option so that `esprit token inspect …` does not need the minting flags; clap fills it
    // whenever no subcommand is given (the flags are then required).
    mint: Option<MintArgs>,
}

/// Subcommands of `esprit token`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Decode a token and explain, check by check, whether the proxy would accept it for a method.
    Inspect(Box<crate::inspect_cmd::InspectArgs>),
}

#[derive(Args)]
pub struct MintArgs {
    /// The service-account key file (Google's JSON, e.g. from `esprit iam keys create`).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// The `aud` claim. With commas, a JSON list of the comma-separated audiences.
    #[arg(
        long,
        value_name = "AUD",
        required_unless_present = "id_token",
        conflicts_with = "id_token"
    )]
    audiences: Option<String>,
    /// Ask the key file's token endpoint (`token_uri`) for an ID token instead of minting a
    /// JWT (needs --target-audience).
    #[arg(long, requires = "target_audience")]
    id_token: bool,
    /// With --id-token: the audience of the ID token (the `aud` the service expects).
    #[arg(long, value_name = "AUD", requires = "id_token")]
    target_audience: Option<String>,
    /// With --id-token: the token endpoint to ask instead of the key file's `token_uri`.
    #[arg(long, value_name = "URL", requires = "id_token")]
    token_uri: Option<String>,
    /// The `iss` claim. Default: the key file's `client_email`.
    #[arg(long, value_name = "ISS")]
    issuer: Option<String>,
    /// The `sub` claim. Default: the key file's `client_email`.
    #[arg(long, value_name = "SUB")]
    subject: Option<String>,
    /// The `email` claim. Default: the key file's `client_email`.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// `exp` - `iat`: `3600`, `3600s`, `60m`, `1h`; at most 24h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration::TOKEN_LIFETIME.parser())]
    lifetime: Duration,
    /// Act as this account (IAM Credentials API): get an access token for the key file's
    /// account from its token_uri, then print an ID token of EMAIL for --audiences
    /// (generateIdToken), or with --sign-jwt a JWT signed by EMAIL's server-managed key
    /// (signJwt). The key file's account needs roles/iam.serviceAccountTokenCreator on EMAIL.
    #[arg(long, value_name = "EMAIL", conflicts_with = "id_token")]
    impersonate: Option<String>,
    /// With --impersonate: call signJwt with the usual claims (iss, sub, email = EMAIL unless
    /// --issuer/--subject/--email say otherwise; aud; iat; exp = iat + --lifetime, at most 12h)
    /// instead of generateIdToken.
    #[arg(long, requires = "impersonate")]
    sign_jwt: bool,
    /// With --impersonate (ID token): include the `email` and `email_verified` claims.
    #[arg(long, requires = "impersonate", conflicts_with = "sign_jwt")]
    include_email: bool,
    /// With --impersonate: a delegate of the chain (EMAIL or projects/-/serviceAccounts/EMAIL),
    /// in order. Repeatable, at most 10.
    #[arg(long = "delegate", value_name = "EMAIL", requires = "impersonate")]
    delegates: Vec<String>,
    /// With --impersonate: the IAM Credentials API's base URL. Default: the scheme and host
    /// of the key file's token_uri (https://iamcredentials.googleapis.com for Google's).
    #[arg(long, value_name = "URL", requires = "impersonate")]
    iam_credentials_url: Option<String>,
    /// An extra claim, `NAME=JSON` (`tier="gold"`, `n=3`, `roles=["a","b"]`); a value that is
    /// not JSON is a string (`tier=gold`). Repeatable. May not set iat, exp, aud, iss, sub or
    /// email.
    #[arg(long = "claim", value_name = "NAME=JSON", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
}

fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=JSON"))?;
    if name.is_empty() {
        return Err(format!("{text:?}: the claim name is empty"));
    }
    if let Some((_, hint)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
        return Err(format!("--claim may not set {name:?}: {hint}"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// `a` → `"a"`; `a,b` → `["a","b"]` (blanks around commas trimmed, empty parts refused).
fn audience_claim(audiences: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = audiences.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--audiences {audiences:?}: an audience is empty");
    }
    Ok(match parts.as_slice() {
        [one] => Value::from(*one),
        many => Value::from(many.to_vec()),
    })
}

/// The claims of a token minted at `now` (seconds since the epoch) for `client_email`.
fn build_claims(args: &MintArgs, client_email: &str, now: u64) -> anyhow::Result<Value> {
    let mut claims = Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + args.lifetime.as_secs()).into());
    let audiences = args
        .audiences
        .as_deref()
        .context("--audiences is required to mint a token")?;
    claims.insert("aud".into(), audience_claim(audiences)?);
    let or_email = |v: &Option<String>| v.clone().unwrap_or_else(|| client_email.to_owned());
    claims.insert("iss".into(), or_email(&args.issuer).into());
    claims.insert("sub".into(), or_email(&args.subject).into());
    claims.insert("email".into(), or_email(&args.email).into());
    for (name, value) in &args.claims {
        if claims.insert(name.clone(), value.clone()).is_some() {
            bail!("--claim {name:?} is given more than once");
        }
    }
    Ok(Value::Object(claims))
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(TokenCommand::Inspect(args)) => crate::inspect_cmd::run(*args),
        None => match &args.mint {
            Some(mint_args) => mint(mint_args),
            None => anyhow::bail!(
                "esprit token needs --key-file and --audiences (or --id-token \
                 --target-audience), or a subcommand (see --help)"
            ),
        },
    }
}

impl MintArgs {
    /// The flags `--key-file KEY_FILE --audiences AUDIENCES [--issuer ISSUER]`, the others at
    /// their defaults (`sub` and `email` = the key file's `client_email`, 1 h, no extras).
    pub(crate) fn new(key_file: PathBuf, audiences: String, issuer: Option<String>) -> MintArgs {
        MintArgs {
            key_file,
            audiences: Some(audiences),
            id_token: false,
            target_audience: None,
            token_uri: None,
            issuer,
            subject: None,
            email: None,
            lifetime: Duration::from_secs(3600), // = the flag's default, "1h"
            claims: Vec::new(),
            impersonate: None,
            sign_jwt: false,
            include_email: false,
            delegates: Vec::new(),
            iam_credentials_url: None,
        }
    }

    /// `--key-file KEY_FILE --id-token --target-audience AUDIENCE`.
    pub(crate) fn id_token(key_file: PathBuf, target_audience: String) -> MintArgs {
        MintArgs {
            audiences: None,
            id_token: true,
            target_audience: Some(target_audience),
            ..MintArgs::new(key_file, String::new(), None)
        }
    }

    /// `--key-file KEY_FILE --impersonate TARGET --audiences AUDIENCE --include-email`.
    pub(crate) fn impersonate(key_file: PathBuf, target: String, audience: String) -> MintArgs {
        MintArgs {
            impersonate: Some(target),
            include_email: true,
            ..MintArgs::new(key_file, audience, None)
        }
    }
}

fn mint(args: &MintArgs) -> anyhow::Result<ExitCode> {
    println!("{}", token_for(args)?);
    Ok(ExitCode::SUCCESS)
}

/// The token `esprit token` prints for `args`: minted with the key file, from the token
/// endpoint (`--id-token`) or through the IAM Credentials API (`--impersonate`). Blocking (the
/// last two make HTTP calls on a runtime of their own): async callers use `spawn_blocking`.
pub(crate) fn token_for(args: &MintArgs) -> anyhow::Result<String> {
    if let Some(target) = &args.impersonate {
        impersonate(args, target)
    } else if args.id_token {
        fetch_id_token(args)
    } else {
        mint_token(args)
    }
}

/// `--impersonate TARGET`: an ID token of TARGET, or with `--sign-jwt` a JWT TARGET signed.
fn impersonate(args: &MintArgs, target: &str) -> anyhow::Result<String> {
    use crate::impersonate::{Ask, Impersonation};
    let audiences = args
        .audiences
        .as_deref()
        .context("--impersonate needs --audiences")?;
    let ask = if args.sign_jwt {
        Ask::SignJwt {
            claims: build_claims(args, target, unix_now()?)?,
        }
    } else {
        if audiences.contains(',') {
            bail!("--impersonate asks for an ID token of one audience: --audiences has commas");
        }
        for (given, flag) in [
            (args.issuer.is_some(), "--issuer"),
            (args.subject.is_some(), "--subject"),
            (args.email.is_some(), "--email"),
            (!args.claims.is_empty(), "--claim"),
            (args.lifetime != Duration::from_secs(3600), "--lifetime"),
        ] {
            if given {
                bail!(
                    "{flag} does not apply to an ID token from --impersonate (the token service \
                     sets its claims); use --sign-jwt for a JWT with chosen claims"
                );
            }
        }
        Ask::IdToken {
            audience: audiences.trim().to_owned(),
            include_email: args.include_email,
        }
    };
    Impersonation {
        key_file: &args.key_file,
        target,
        delegates: &args.delegates,
        iam_credentials_url: args.iam_credentials_url.as_deref(),
        ask,
    }
    .run()
}

/// The key file at `path` and a signer over its private key.
pub(crate) fn load_key(
    path: &std::path::Path,
) -> anyhow::Result<(jose::ServiceAccountKey, jose::Signer)> {
    let json = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let key = jose::ServiceAccountKey::from_json(&json)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let signer = jose::Signer::from_service_account(&key)
        .with_context(|| format!("loading the private key of {}", path.display()))?;
    Ok((key, signer))
}

pub(crate) fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// The audience google-auth puts in every assertion, whatever the key file's `token_uri`.
pub(crate) const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

/// How long `--id-token` and `--impersonate` wait for each HTTP call (connection and answer).
const TOKEN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);

/// The claims of the assertion google-auth's `IDTokenCredentials` signs.
fn id_token_assertion_claims(client_email: &str, target_audience: &str, now: u64) -> Value {
    serde_json::json!({
        "iss": client_email,
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "target_audience": target_audience,
    })
}

/// The message for a refusal from the token endpoint: OAuth's `error: error_description`
/// when the body is such JSON, else the status and the start of the body.
fn token_endpoint_error(url: &str, status: u16, body: &str) -> String {
    let oauth = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let error = v.get("error")?.as_str()?.to_owned();
        let description = v.get("error_description").and_then(Value::as_str);
        Some(match description {
            Some(d) => format!("{error}: {d}"),
            None => error,
        })
    });
    match oauth {
        Some(oauth) => format!("the token endpoint {url} refused (HTTP {status}): {oauth}"),
        None => {
            let start: String = body.chars().take(200).collect();
            format!("the token endpoint {url} answered HTTP {status}: {start}")
        }
    }
}

/// `--id-token`: an ID token from the token endpoint, for the key file's account.
fn fetch_id_token(args: &MintArgs) -> anyhow::Result<String> {
    let (key, signer) = load_key(&args.key_file)?;
    let audience = args
        .target_audience
        .as_deref()
        .context("--id-token needs --target-audience")?;
    let claims = id_token_assertion_claims(&key.client_email, audience, unix_now()?);
    let assertion = signer
        .sign_jwt(
            Some(&key.private_key_id),
            signer.default_algorithm(),
            &claims,
        )
        .context("signing the assertion")?;
    let url = args.token_uri.clone().unwrap_or(key.token_uri);
    let answer = runtime()?.block_on(async {
        let client = http_client()?;
        jwt_grant(&client, &url, &assertion).await
    })?;
    match answer.get("id_token").and_then(Value::as_str) {
        Some(token) => Ok(token.to_owned()),
        None => bail!("the token endpoint {url} answered 200 without an id_token"),
    }
}

/// A runtime for the blocking CLI's HTTP calls.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The HTTP client of `--id-token` and `--impersonate`: no proxy, no redirects, each call
/// bounded by 30 s.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(TOKEN_ENDPOINT_TIMEOUT)
        .timeout(TOKEN_ENDPOINT_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// POSTs an RFC 7523 grant of `assertion` to the token endpoint `url`; the JSON of its 200
/// answer, else an error with OAuth's `error: error_description`.
pub(crate) async fn jwt_grant(
    client: &reqwest::Client,
    url: &str,
    assertion: &str,
) -> anyhow::Result<Value> {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .append_pair("assertion", assertion)
        .finish();
    let response = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| format!("asking the token endpoint {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer of the token endpoint {url}"))?;
    if status != 200 {
        bail!("{}", token_endpoint_error(url, status, &text));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("the token endpoint {url} answered 200 without JSON"))
}

/// The token `esprit token` prints for `args` (also used by `esprit demo`).
pub(crate) fn mint_token(args: &MintArgs) -> anyhow::Result<String> {
    let (key, signer) = load_key(&args.key_file)?;
    let now = unix_now()?;
    let claims = build_claims(args, &key.client_email, now)?;
    let token = signer
        .sign_jwt(
            Some(&key.private_key_id),
            signer.default_algorithm(),
            &claims,
        )
        .context("signing the token")?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(audiences: &str, claims: &[&str]) -> MintArgs {
        MintArgs {
            key_file: PathBuf::from("key.json"),
            audiences: Some(audiences.into()),
            id_token: false,
            target_audience: None,
            token_uri: None,
            issuer: None,
            subject: None,
            email: None,
            lifetime: Duration::from_secs(3600),
            claims: claims.iter().map(|c| parse_claim(c).unwrap()).collect(),
            impersonate: None,
            sign_jwt: false,
            include_email: false,
            delegates: Vec::new(),
            iam_credentials_url: None,
        }
    }

    const EMAIL: &str = "client-one@my-project.iam.gserviceaccount.com";

    #[test]
    fn defaults_follow_the_tutorial() {
        let claims = build_claims(&args("bookstore.example.com", &[]), EMAIL, 1000).unwrap();
        assert_eq!(
            claims,
            json!({"iat": 1000, "exp": 4600, "aud": "bookstore.example.com",
                   "iss": EMAIL, "sub": EMAIL, "email": EMAIL})
        );
    }

    #[test]
    fn flags_override_and_commas_make_a_list() {
        let mut a = args(
            "a.example.com, b.example.com",
            &["tier=gold", "n=3", "x={\"y\":[1]}"],
        );
        a.issuer = Some("issuer-x".into());
        a.subject = Some("12345678".into());
        a.email = Some(String::new());
        a.lifetime = Duration::from_secs(60);
        let claims = build_claims(&a, EMAIL, 1000).unwrap();
        assert_eq!(
            claims,
            json!({"iat": 1000, "exp": 1060, "aud": ["a.example.com", "b.example.com"],
                   "iss": "issuer-x", "sub": "12345678", "email": "",
                   "tier": "gold", "n": 3, "x": {"y": [1]}})
        );
        assert!(build_claims(&args("a,,b", &[]), EMAIL, 0).is_err());
        let err = build_claims(&args("x", &["t=1", "t=2"]), EMAIL, 0).unwrap_err();
        assert_eq!(err.to_string(), "--claim \"t\" is given more than once");
    }

    #[test]
    fn reserved_and_malformed_claims_are_refused() {
        for name in ["iat", "exp", "aud", "iss", "sub", "email"] {
            let err = parse_claim(&format!("{name}=1")).unwrap_err();
            assert!(
                err.starts_with(&format!("--claim may not set \"{name}\"")),
                "{err}"
            );
        }
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=1").is_err());
        assert_eq!(parse_claim("s=a=b").unwrap(), ("s".into(), json!("a=b")));
        assert_eq!(parse_claim("b=true").unwrap(), ("b".into(), json!(true)));
        assert_eq!(parse_claim("s=\"1\"").unwrap(), ("s".into(), json!("1")));
    }

    #[test]
    fn id_token_assertions_are_what_google_auth_signs() {
        assert_eq!(
            id_token_assertion_claims(EMAIL, "https://svc.example.com", 1000),
            json!({"iss": EMAIL, "aud": "https://oauth2.googleapis.com/token", "iat": 1000,
                   "exp": 4600, "target_audience": "https://svc.example.com"})
        );
    }

    #[test]
    fn token_endpoint_errors_are_readable() {
        let url = "http://127.0.0.1:1/token";
        assert_eq!(
            token_endpoint_error(
                url,
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            ),
            "the token endpoint http://127.0.0.1:1/token refused (HTTP 400): invalid_grant: \
             Invalid JWT Signature."
        );
        assert_eq!(
            token_endpoint_error(url, 502, "bad gateway"),
            "the token endpoint http://127.0.0.1:1/token answered HTTP 502: bad gateway"
        );
    }

    #[test]
    fn lifetimes() {
        let parse_lifetime = duration::TOKEN_LIFETIME.parser();
        assert_eq!(parse_lifetime("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert!(parse_lifetime("25h").is_err());
        assert!(parse_lifetime("0").is_err());
        assert!(parse_lifetime("soon").is_err());
    }
}
