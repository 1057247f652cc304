//! `iam`: service accounts, their keys and API keys for esprit, compatible with Google's.
//!
//! What it does: keeps service accounts (`NAME@PROJECT.iam.gserviceaccount.com`) and the
//! *public* halves of their keys in a SQLite file ([`Store`]); makes new keys as Google does
//! (RSA 2048 or P-256, a 40-hex key id, a self-signed X.509 certificate) and writes the Google
//! JSON key file with the private key to the one file the user asked for, mode 0600
//! ([`Store::create_key`]); and serves the public keys at Google's paths, as the X.509 map and
//! as a JWKS ([`serve`]), so that tokens signed with the key files verify through esprit or any
//! verifier that trusts Google's formats.
//!
//! API keys (the stand-in for Google's API keys and Service Control's check): a key is
//! `AIza` + 35 random base64url characters ([`api_keys::new_api_key`]) belonging to a consumer
//! project; the store keeps its SHA-256 and 8-character prefix, never the key
//! ([`Store::create_api_key`], [`Store::revoke_api_key`], [`Store::check_api_key`]); the key
//! server answers `POST /v1/services/{service}:check` with body `{"api_key": KEY}` by
//! `{"valid": true, "consumer_project"}` or `{"valid": false}` (the `keycheck` crate's contract;
//! [`ApiKeyCheck::answer`]). Any project's key is valid for any service.
//!
//! What it deliberately does not do: it never stores or serves a private key (the key file is
//! the only copy) nor an API key (shown once at creation); it mints no tokens (that is
//! `jose::Signer`, driven by `esprit token`); it implements no OAuth token endpoint, IAM
//! policies, API-key restrictions (services, referrers, IPs), quotas or per-project service
//! enablement; it does not cache check answers (the proxy does); it has no TLS (run it on
//! loopback or behind a TLS terminator).
//!
//! Validation, key-file building and the rendering of key documents are plain functions
//! ([`validate_account_id`], [`new_key`], [`render::x509_map`], [`render::jwks`]); files and
//! sockets are in [`Store`], [`KeyFileSlot`] and [`serve`].

pub mod api_keys;
mod error;
mod ids;
mod keyfile;
mod metrics;
mod model;
pub mod render;
mod server;
mod store;

pub use api_keys::{ApiKey, ApiKeyCheck, Revocation};
pub use conn_guard::ConnectionLimits;
pub use error::{IamError, Result};
pub use ids::{
    EMAIL_DOMAIN, account_email, decode_path_segment, encode_path_segment, validate_account_id,
    validate_project_id,
};
pub use keyfile::{KeyFileSlot, NewKey, new_key};
pub use metrics::IamMetrics;
pub use model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
pub use server::{
    CACHE_MAX_AGE_SECS, CHECK_BODY_LIMIT, serve, serve_observed, serve_pool, serve_with,
};
pub use store::{LooseFile, PoolSettings, SCHEMA_VERSION, Store, StorePool, loose_files};

/// The default store file, in the working directory.
pub const DEFAULT_STORE: &str = "esprit-iam.db";

/// The environment variable that names the store file.
pub const STORE_ENV: &str = "ESPRIT_IAM_STORE";
