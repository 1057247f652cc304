//! The token service's endpoints: OpenID discovery, its certificates, and `POST /token`.
//!
//! `POST /token` (RFC 6749 §4 with RFC 7523's JWT bearer grant, as Google's
//! `https://oauth2.googleapis.com/token`): form body of at most
//! [`TOKEN_BODY_LIMIT`](crate::token::assertion::TOKEN_BODY_LIMIT) bytes with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and `assertion` (checked by
//! [`crate::token::assertion`]). Answers 200 with `{"id_token"}` (assertion with
//! `target_audience`) or `{"access_token", "expires_in", "token_type": "Bearer"}` (with `scope`);
//! refusals are 400 `{"error", "error_description"}` with an RFC 6749 §5.2 code, never a status or
//! code that google-auth retries; a store failure is 500 `server_error`, a store connection
//! busy for [`STORE_WAIT`](crate::token::service::store_slot::STORE_WAIT) 503
//! `temporarily_unavailable` (both retried by google-auth, as they should be). All carry
//! `Cache-Control: no-store`. The assertion and the tokens are never logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderValue, PRAGMA};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::{Body, CACHE_CONTROL_OK, Route, error_response, json_response};
use crate::IamError;
use crate::token::TokenService;
use crate::token::assertion::{
    Grant, JWT_BEARER, Refusal, TOKEN_BODY_LIMIT, check_assertion, parse_request,
};
use crate::token::service::ID_TOKEN_LIFETIME_SECS;

/// How long the body of a token request may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The discovery document of the token service at `issuer`.
pub(crate) fn discovery_document(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/oauth2/v3/certs"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": [JWT_BEARER],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "claims_supported": ["aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"],
    })
}

/// A token-endpoint answer (no caching, RFC 6749 §5.1).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = json_response(status, body.to_string(), "no-store");
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn refusal_response(refusal: &Refusal) -> Response<Body> {
    no_store(
        StatusCode::BAD_REQUEST,
        json!({"error": refusal.error(), "error_description": refusal.description()}),
    )
}

/// 400 `invalid_request` for a body that cannot be read (too large, too slow, broken).
fn bad_body(description: &str) -> Response<Body> {
    no_store(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_request", "error_description": description}),
    )
}

fn server_error(err: &IamError) -> Response<Body> {
    if let IamError::StoreBusy { .. } = err {
        // Busy, not broken: a retry (google-auth retries 503) may well succeed.
        tracing::warn!("token request refused: the token service's store connection is busy");
        let mut response = no_store(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "temporarily_unavailable", "error_description": "store busy, retry"}),
        );
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    tracing::error!(error = %err, source = ?std::error::Error::source(err), "token service failed");
    no_store(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "server_error", "error_description": "internal error"}),
    )
}

/// Runs a blocking token-service call off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, IamError>
where
    F: FnOnce() -> Result<T, IamError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(IamError::StoreWorker(join.to_string())))
}

pub(super) async fn handle(
    tokens: TokenService,
    route: Route,
    request: Request<Incoming>,
) -> Response<Body> {
    match route {
        Route::Discovery => json_response(
            StatusCode::OK,
            discovery_document(tokens.issuer_url()).to_string(),
            CACHE_CONTROL_OK,
        ),
        Route::TokenJwks | Route::TokenX509 => {
            let jwks = route == Route::TokenJwks;
            let doc = blocking(move || {
                if jwks {
                    tokens.jwks()
                } else {
                    tokens.x509_map()
                }
            })
            .await;
            match doc {
                Ok(body) => json_response(StatusCode::OK, body, CACHE_CONTROL_OK),
                Err(err) => {
                    tracing::error!(error = %err, "token service keys could not be read");
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
                }
            }
        }
        Route::Token => token(tokens, request).await,
        _ => error_response(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        bad_body(&format!(
            "request body larger than {TOKEN_BODY_LIMIT} bytes"
        ))
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > TOKEN_BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), TOKEN_BODY_LIMIT);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        // 400, not 408: google-auth retries a 408.
        Err(_elapsed) => Err(bad_body("request body not received in time")),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(bad_body("request body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

async fn token(tokens: TokenService, request: Request<Incoming>) -> Response<Body> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let parsed = match parse_request(&body) {
        Ok(parsed) => parsed,
        Err(refusal) => {
            tracing::info!(error = refusal.error(), refusal = ?refusal, "token request refused");
            return refusal_response(&refusal);
        }
    };
    let issuer = parsed.issuer().map(str::to_owned);
    let service = tokens.clone();
    let looked_up = blocking(move || {
        let Some(email) = issuer else {
            return Ok(None);
        };
        match service.assertion_keys(&email) {
            Ok(keys) => Ok(Some((service.account(&email)?, keys))),
            Err(IamError::UnknownAccount(_)) => Ok(None),
            Err(err) => Err(err),
        }
    })
    .await;
    let found = match looked_up {
        Ok(found) => found,
        Err(err) => return server_error(&err),
    };
    let keys = found.as_ref().map(|(_, keys)| keys.as_slice());
    let grant = check_assertion(&parsed, keys, &tokens.token_endpoint(), tokens.now());
    let email = parsed
        .issuer()
        .unwrap_or_default()
        .escape_debug()
        .to_string();
    let (grant, account) = match (grant, found) {
        (Ok(grant), Some((account, _))) => (grant, account),
        (Err(refusal), _) => {
            tracing::info!(%email, error = refusal.error(), refusal = ?refusal, "token request refused");
            return refusal_response(&refusal);
        }
        // check_assertion refuses an unknown account; kept total all the same.
        (Ok(_), None) => return refusal_response(&Refusal::UnknownAccount),
    };
    let answer = blocking(move || match grant {
        Grant::IdToken { audience } => {
            let token = tokens.issue_id_token(&account, &audience, true)?;
            Ok(json!({ "id_token": token }))
        }
        Grant::AccessToken { scopes } => {
            let lifetime = Duration::from_secs(ID_TOKEN_LIFETIME_SECS);
            let (token, expires) = tokens.issue_access_token(&account, &scopes, lifetime)?;
            Ok(json!({
                "access_token": token,
                "expires_in": expires.saturating_sub(tokens.now()),
                "token_type": "Bearer",
            }))
        }
    })
    .await;
    match answer {
        Ok(body) => {
            tracing::info!(%email, "token issued");
            no_store(StatusCode::OK, body)
        }
        // Deleted between the check and the issue.
        Err(IamError::UnknownAccount(_)) => refusal_response(&Refusal::UnknownAccount),
        Err(err) => server_error(&err),
    }
}
