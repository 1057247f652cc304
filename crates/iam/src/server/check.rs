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
//! Any project's key is valid for any service: `{service}` is only logged. (Google checks that
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
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use super::{Body, busy_response, error_response, json_response};
use crate::IamError;
use crate::api_keys::{ApiKeyCheck, key_prefix};
use crate::store::StorePool;

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

/// Answers a check for `service` from the store.
pub(super) async fn handle(
    store: Arc<StorePool>,
    service: String,
    request: Request<Incoming>,
) -> Response<Body> {
    let key = match read_key(request).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let prefix = key_prefix(&key).to_owned();
    if key.len() > keycheck::MAX_API_KEY_BYTES {
        // Not a key: no lookup, and the same answer as an unknown key.
        tracing::info!(service = %service.escape_debug(), key_prefix = %prefix.escape_debug(), result = "too-long", "API key check");
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
        key_id = check.key_id().unwrap_or("-"),
        key_prefix = %prefix.escape_debug(),
        result = check.result_name(),
        "API key check"
    );
    json_response(StatusCode::OK, check.answer().to_json(), "no-store")
}
