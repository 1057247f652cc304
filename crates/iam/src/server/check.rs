//! `POST /v1/services/{service}:check`: is this API key valid? The key server's stand-in for
//! Google Service Control's check, answering the proxy.
//!
//! Request: `content-type: application/json`, body `{"api_key": KEY}` of at most
//! [`CHECK_BODY_LIMIT`] bytes (other members are ignored). Answer: 200 with the `keycheck`
//! contract's JSON (`{"valid": true, "consumer_project": …}` or `{"valid": false}`: no key id,
//! no reason) and `Cache-Control: no-store` (the proxy decides how long to cache). A key longer
//! than `keycheck::MAX_API_KEY_BYTES` is answered invalid without a lookup.
//! Errors: 400 (not JSON, or no string `api_key`), 408 (body not received in 10 s), 413 (body
//! too large), 415 (not `application/json`), 500 (store failure), 503 (every store connection
//! busy for the pool's wait), all as Google's JSON error.
//!
//! Who may ask ([`crate::check_auth`]): with [`CheckAuth::Required`] (the default of `iam serve`
//! off loopback) the request needs `Authorization: Bearer TOKEN` of an account holding
//! `roles/servicemanagement.serviceController` on `services/{service}`; checked before the body
//! is read, answered 401 `UNAUTHENTICATED` with `WWW-Authenticate: Bearer` (no token, or one that
//! does not verify) or 403 `PERMISSION_DENIED` (an access token without a check scope, or an
//! account without the role on that service). Bindings are read on every check (no cache): a
//! revoked role refuses the next check.
//!
//! Any project's key is valid for any service: `{service}` only selects the role binding and is logged. (Google checks that
//! the consumer project has the service enabled; esprit has no such registry.) The key is never
//! logged: the log line has the service, the key id (when the key exists), the key's 8-character
//! prefix and the result. The service and the prefix are client text: they are logged with
//! control characters escaped (`str::escape_debug`), so a `%0A` in the path cannot forge a log
//! line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use super::{Body, busy_response, error_response, json_response};
use crate::api_keys::{ApiKeyCheck, key_prefix};
use crate::check_auth::{
    CallerRefusal, CallerToken, CheckAuth, claimed_issuer, has_check_scope, verify_caller_jwt,
};
use crate::iam_credentials::bearer;
use crate::service_roles::{ServiceBindingFilter, ServiceRole, authorize_check};
use crate::store::StorePool;
use crate::{IamError, TokenService};

/// The largest check request body accepted, bytes (a key is 39).
pub const CHECK_BODY_LIMIT: usize = 8 * 1024;

/// How long the body of a check may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn is_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn too_large() -> Response<Body> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Request body larger than {CHECK_BODY_LIMIT} bytes"),
    )
}

/// The API key in the request's body, or the error answer.
async fn read_key(request: Request<Incoming>) -> Result<String, Response<Body>> {
    if !is_json(&request) {
        return Err(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > CHECK_BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), CHECK_BODY_LIMIT);
    let bytes: Bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_elapsed) => {
            return Err(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "Request body not received in time",
            ));
        }
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "API key check body could not be read");
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "Request body could not be read",
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // An object is required (serde's derived structs would also take `["KEY"]`), members other
    // than `api_key` are ignored. The parser's message is not passed on: it could quote the body,
    // i.e. the key.
    let object = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes);
    let key = match object {
        Ok(object) => {
            match serde_json::from_value::<keycheck::CheckRequest>(serde_json::Value::Object(
                object,
            )) {
                Ok(request) => Ok(request.api_key),
                Err(_) => Err("a JSON object with a string \"api_key\""),
            }
        }
        Err(err) if err.classify() == serde_json::error::Category::Data => {
            Err("a JSON object with a string \"api_key\"")
        }
        Err(_) => Err("valid JSON"),
    };
    key.map_err(|what| {
        error_response(
            StatusCode::BAD_REQUEST,
            &format!("Request body must be {what}: {{\"api_key\": \"...\"}}"),
        )
    })
}

fn refused(refusal: &CallerRefusal) -> Response<Body> {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = error_response(status, &refusal.message());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn store_failure(err: &IamError, service: &str) -> Response<Body> {
    match err {
        IamError::StoreBusy { .. } => {
            tracing::warn!(service = %service.escape_debug(), "API key check refused: every store connection is busy");
            busy_response()
        }
        _ => {
            tracing::error!(error = %err, source = ?std::error::Error::source(err), service = %service.escape_debug(), "API key check caller lookup failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
        }
    }
}

/// The authenticated caller's account email, or the refusal (401/403, 5xx on store failures).
async fn authenticate(
    store: &Arc<StorePool>,
    tokens: Option<&TokenService>,
    now: u64,
    request: &Request<Incoming>,
) -> Result<String, Response<Body>> {
    let refuse = |refusal: CallerRefusal, caller: Option<&str>| {
        // Never the token: the reason, and the account it claimed (client text, escaped).
        tracing::info!(
            reason = refusal.reason(),
            caller = %caller.unwrap_or("-").escape_debug(),
            "API key check caller refused"
        );
        refused(&refusal)
    };
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .map(hyper::header::HeaderValue::as_bytes);
    let token = match bearer(header) {
        Ok(token) => token,
        Err(crate::iam_credentials::Unauthenticated::Missing) => {
            return Err(refuse(CallerRefusal::Missing, None));
        }
        Err(crate::iam_credentials::Unauthenticated::Invalid) => {
            return Err(refuse(CallerRefusal::InvalidAccessToken, None));
        }
    };
    match CallerToken::parse(token) {
        Err(refusal) => Err(refuse(refusal, None)),
        Ok(CallerToken::AccessToken(token)) => {
            // Access tokens exist only where the token service runs (`--issuer-url`).
            let Some(tokens) = tokens.cloned() else {
                return Err(refuse(CallerRefusal::InvalidAccessToken, None));
            };
            let owner = tokio::task::spawn_blocking(move || tokens.access_token_owner(&token))
                .await
                .unwrap_or_else(|join| Err(IamError::StoreWorker(join.to_string())));
            match owner {
                Ok(Some((account, scopes))) if has_check_scope(&scopes) => Ok(account.email),
                Ok(Some((account, _))) => Err(refuse(
                    CallerRefusal::InsufficientScopes,
                    Some(&account.email),
                )),
                Ok(None) => Err(refuse(CallerRefusal::InvalidAccessToken, None)),
                Err(err) => Err(store_failure(&err, "-")),
            }
        }
        Ok(CallerToken::Jwt(jwt)) => {
            let issuer = match claimed_issuer(&jwt) {
                Ok(issuer) => issuer.to_owned(),
                Err(refusal) => return Err(refuse(refusal, None)),
            };
            let email = issuer.clone();
            let keys = store
                .with_store(move |store| match store.published_keys(&email) {
                    Err(IamError::UnknownAccount(_)) => Ok(Vec::new()),
                    found => found,
                })
                .await;
            let keys = match keys {
                Ok(keys) => keys,
                Err(err) => return Err(store_failure(&err, "-")),
            };
            verify_caller_jwt(&jwt, &keys, now).map_err(|refusal| refuse(refusal, Some(&issuer)))
        }
    }
}

/// May `caller` check keys for `service`? The 403 otherwise.
async fn authorize(
    store: &Arc<StorePool>,
    caller: &str,
    service: &str,
) -> Result<(), Response<Body>> {
    let filter = ServiceBindingFilter {
        member: Some(caller.to_owned()),
        role: Some(ServiceRole::ServiceController),
        service: Some(service.to_owned()),
    };
    let bindings = store
        .with_store(move |store| store.service_role_bindings(&filter))
        .await
        .map_err(|err| store_failure(&err, service))?;
    authorize_check(caller, service, &bindings).map_err(|denied| {
        tracing::info!(
            caller = %caller,
            service = %service.escape_debug(),
            result = "denied",
            "API key check caller refused"
        );
        error_response(StatusCode::FORBIDDEN, &denied.message())
    })
}

/// Answers a check for `service` from the store, to a caller `auth` admits.
pub(super) async fn handle(
    store: Arc<StorePool>,
    tokens: Option<TokenService>,
    auth: &CheckAuth,
    service: String,
    request: Request<Incoming>,
) -> Response<Body> {
    let caller = match auth.now() {
        None => None,
        Some(now) => {
            let caller = match authenticate(&store, tokens.as_ref(), now, &request).await {
                Ok(caller) => caller,
                Err(response) => return response,
            };
            if let Err(response) = authorize(&store, &caller, &service).await {
                return response;
            }
            Some(caller)
        }
    };
    let caller = caller.as_deref().unwrap_or("-");
    let key = match read_key(request).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let prefix = key_prefix(&key).to_owned();
    if key.len() > keycheck::MAX_API_KEY_BYTES {
        // Not a key: no lookup, and the same answer as an unknown key.
        tracing::info!(service = %service.escape_debug(), caller, key_prefix = %prefix.escape_debug(), result = "too-long", "API key check");
        return json_response(
            StatusCode::OK,
            ApiKeyCheck::Unknown.answer().to_json(),
            "no-store",
        );
    }
    let looked_up = store
        .with_store(move |store| store.check_api_key(&key))
        .await;
    let check: ApiKeyCheck = match looked_up {
        Ok(check) => check,
        Err(IamError::StoreBusy { .. }) => {
            tracing::warn!(service = %service.escape_debug(), "API key check refused: every store connection is busy");
            return busy_response();
        }
        Err(err) => {
            tracing::error!(error = %err, source = ?std::error::Error::source(&err), service = %service.escape_debug(), "API key check failed in the store");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error");
        }
    };
    // Client text (service, prefix) as escaped values: never a raw line break in the log.
    tracing::info!(
        service = %service.escape_debug(),
        caller,
        key_id = check.key_id().unwrap_or("-"),
        key_prefix = %prefix.escape_debug(),
        result = check.result_name(),
        "API key check"
    );
    json_response(StatusCode::OK, check.answer().to_json(), "no-store")
}
