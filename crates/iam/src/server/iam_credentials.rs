//! The IAM Credentials API on the key server (with the token service on):
//! `POST /v1/projects/-/serviceAccounts/{email}:generateIdToken | :generateAccessToken |
//! :signJwt`. Reading and checking the requests is [`crate::iam_credentials`]; the decision
//! is [`crate::roles::authorize`]; signing is the [`TokenService`]. This module reads the
//! body, looks up and answers.
//!
//! Order of the checks, each answered in Google's error JSON:
//! 1. the bearer (401 `UNAUTHENTICATED`: missing, unknown, expired, its account deleted), and
//!    its scopes (403 `PERMISSION_DENIED`: neither `iam` nor `cloud-platform`);
//! 2. the project segment (400 unless `-`) and the body (400 `INVALID_ARGUMENT`; 413 above
//!    [`BODY_LIMIT`]; 408 when it does not arrive in 10 s);
//! 3. the Token Creator chain (403 `PERMISSION_DENIED` with Google's message, which does not
//!    say whether the account exists: an unknown target is answered exactly as a target the
//!    caller has no role on, so a caller learns nothing about accounts it may not use);
//! 4. the target (404 only if it was deleted between the check and the lookup), then signing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::{Body, busy_response, error_response, json_response};
use crate::iam_credentials::{
    BODY_LIMIT, BadRequest, CallPath, INSUFFICIENT_SCOPES, Method, Unauthenticated,
    WILDCARD_REQUIRED, access_token_request, bearer, expire_time, has_caller_scope,
    id_token_request, sign_jwt_request,
};
use crate::model::Account;
use crate::roles::authorize;
use crate::store::StorePool;
use crate::{IamError, TokenService};

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn unauthenticated(why: Unauthenticated) -> Response<Body> {
    let mut response = error_response(StatusCode::UNAUTHORIZED, why.message());
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn bad_request(err: BadRequest) -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, &err.0)
}

fn internal(err: &IamError, what: &str) -> Response<Body> {
    match err {
        IamError::StoreBusy { .. } => {
            tracing::warn!("{what} refused: every store connection is busy");
            busy_response()
        }
        _ => {
            tracing::error!(error = %err, source = ?std::error::Error::source(err), "{what} failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
        }
    }
}

/// Runs blocking token-service work on tokio's blocking threads.
async fn blocking<T, F>(work: F) -> crate::Result<T>
where
    F: FnOnce() -> crate::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(IamError::StoreWorker(join.to_string())))
}

/// The body, at most [`BODY_LIMIT`] bytes, within [`BODY_TIMEOUT`].
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body larger than {BODY_LIMIT} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), BODY_LIMIT);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_elapsed) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "Request body not received in time",
        )),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(error_response(
            StatusCode::BAD_REQUEST,
            "Request body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// What a checked request asks for.
enum Ask {
    IdToken {
        audience: String,
        include_email: bool,
        email_azp: bool,
    },
    AccessToken {
        scopes: Vec<String>,
        lifetime: Duration,
    },
    SignJwt {
        claims: serde_json::Map<String, serde_json::Value>,
    },
}

/// The request's ask and delegates, from its body at `now`.
fn read_ask(method: Method, body: &[u8], now: u64) -> Result<(Ask, Vec<String>), BadRequest> {
    Ok(match method {
        Method::GenerateIdToken => {
            let r = id_token_request(body)?;
            let ask = Ask::IdToken {
                audience: r.audience,
                include_email: r.include_email,
                email_azp: r.use_email_azp,
            };
            (ask, r.delegates)
        }
        Method::GenerateAccessToken => {
            let r = access_token_request(body)?;
            let ask = Ask::AccessToken {
                scopes: r.scopes,
                lifetime: r.lifetime,
            };
            (ask, r.delegates)
        }
        Method::SignJwt => {
            let r = sign_jwt_request(body, now)?;
            (Ask::SignJwt { claims: r.claims }, r.delegates)
        }
    })
}

/// Signs what `ask` asks for as `target`; the 200 body.
fn answer(tokens: &TokenService, target: &Account, ask: Ask) -> crate::Result<String> {
    Ok(match ask {
        Ask::IdToken {
            audience,
            include_email,
            email_azp,
        } => json!({
            "token": tokens.issue_id_token_with(target, &audience, include_email, email_azp)?
        }),
        Ask::AccessToken { scopes, lifetime } => {
            let (token, expires_at) = tokens.issue_access_token(target, &scopes, lifetime)?;
            json!({"accessToken": token, "expireTime": expire_time(expires_at)})
        }
        Ask::SignJwt { claims } => {
            let (key_id, jwt) = tokens.sign_jwt_as(target, &claims)?;
            json!({"keyId": key_id, "signedJwt": jwt})
        }
    }
    .to_string())
}

/// Answers one call of the API.
pub(super) async fn handle(
    store: Arc<StorePool>,
    tokens: TokenService,
    call: CallPath,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = call.method;
    // 1. Who calls.
    let token = match bearer(
        request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        Ok(token) => token.to_owned(),
        Err(why) => return unauthenticated(why),
    };
    let owner = {
        let tokens = tokens.clone();
        blocking(move || tokens.access_token_owner(&token)).await
    };
    let (caller, scopes) = match owner {
        Ok(Some(owner)) => owner,
        Ok(None) => return unauthenticated(Unauthenticated::Invalid),
        Err(err) => return internal(&err, "access token lookup"),
    };
    if !has_caller_scope(&scopes) {
        return error_response(StatusCode::FORBIDDEN, INSUFFICIENT_SCOPES);
    }
    // 2. What it asks.
    if call.project != "-" {
        return error_response(StatusCode::BAD_REQUEST, WILDCARD_REQUIRED);
    }
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (ask, delegates) = match read_ask(method, &body, tokens.now()) {
        Ok(read) => read,
        Err(err) => return bad_request(err),
    };
    // 3. May it.
    let target = call.account;
    let caller_email = caller.email;
    let bindings = {
        let mut chain: Vec<String> = delegates.clone();
        chain.push(target.clone());
        store
            .with_store(move |store| {
                let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
                store.token_creator_bindings_on(&chain)
            })
            .await
    };
    let bindings = match bindings {
        Ok(bindings) => bindings,
        Err(err) => return internal(&err, "role binding lookup"),
    };
    if let Err(denied) = authorize(&caller_email, &target, &delegates, &bindings) {
        // Account names are not secrets; client text is escaped.
        tracing::info!(
            method = method.name(),
            caller = %caller_email,
            target = %target.escape_debug(),
            missing_member = %denied.member.escape_debug(),
            missing_on = %denied.resource.escape_debug(),
            result = "denied",
            "IAM Credentials call"
        );
        return error_response(StatusCode::FORBIDDEN, &method.denied_message());
    }
    // 4. Sign.
    let target_for_log = target.clone();
    let signed = blocking(move || {
        let target = tokens.account(&target)?;
        answer(&tokens, &target, ask)
    })
    .await;
    match signed {
        Ok(body) => {
            tracing::info!(
                method = method.name(),
                caller = %caller_email,
                target = %target_for_log,
                result = "ok",
                "IAM Credentials call"
            );
            json_response(StatusCode::OK, body, "no-store")
        }
        Err(IamError::UnknownAccount(email)) => error_response(
            StatusCode::NOT_FOUND,
            &format!("Service account {email} not found"),
        ),
        Err(err) => internal(&err, "IAM Credentials signing"),
    }
}
