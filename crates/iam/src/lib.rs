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
//! The token service ([`TokenService`], [`token`]; `iam serve --issuer-url`): Google's OAuth 2.0
//! token endpoint for RFC 7523 assertions signed with key files (`POST /token`, answering ID
//! tokens or opaque access tokens), OpenID discovery and its own certificates, with RS256 signing
//! keys rotated on a schedule ([`token::rotation`]) and kept in the store only sealed with a
//! key-encryption key ([`Kek`], AES-256-GCM) that is never stored. It also holds one such key per
//! account to sign caller-supplied claims ([`TokenService::sign_jwt_as`]), published with the
//! account's keys.
//!
//! Roles ([`roles`]): bindings of `roles/iam.serviceAccountTokenCreator` and
//! `roles/iam.serviceAccountUser` from one account to another ([`Store::grant_role`],
//! [`Store::revoke_role`], [`Store::role_bindings`]), and the pure decision of Google's rule
//! ([`roles::authorize`]: the caller needs the Token Creator role on the target, through each
//! delegate, also for itself). With the token service on, the key server answers Google's IAM
//! Credentials API (`generateIdToken`, `generateAccessToken`, `signJwt`; requests read by
//! [`iam_credentials`]) to callers holding that role. On services ([`service_roles`]):
//! `roles/servicemanagement.serviceController` on `services/SERVICE`
//! ([`Store::grant_service_role`]); with [`CheckAuth::Required`] the key server answers API-key
//! checks only to callers authenticated by [`check_auth`] that hold it on the checked service.
//!
//! What it deliberately does not do: it never stores a key file's private key (the key file is
//! the only copy) nor an API key (shown once at creation), nor any private key in clear; it does
//! no domain-wide delegation, IAM policies beyond the two roles, API-key restrictions (services, referrers, IPs),
//! quotas or per-project service enablement; it does not cache check answers nor role bindings
//! (the proxy caches answers).
//!
//! Validation, key-file building and the rendering of key documents are plain functions
//! ([`validate_account_id`], [`new_key`], [`render::x509_map`], [`render::jwks`]); files and
//! sockets are in [`Store`], [`KeyFileSlot`] and [`serve`].

pub mod api_keys;
pub mod check_auth;
mod error;
pub mod iam_credentials;
mod ids;
mod kek;
mod keyfile;
mod metrics;
mod model;
pub mod readiness;
pub mod render;
pub mod roles;
mod server;
pub mod service_roles;
mod store;
pub mod token;

pub use api_keys::{ApiKey, ApiKeyCheck, Revocation};
pub use check_auth::CheckAuth;
pub use conn_guard::ConnectionLimits;
/// The TLS loader the key server shares with the proxy (`--tls-cert`/`--tls-key`).
pub use conn_guard::tls;
pub use error::{IamError, Result};
pub use ids::{
    EMAIL_DOMAIN, account_email, decode_path_segment, encode_path_segment, validate_account_id,
    validate_project_id,
};
pub use kek::{KEK_ENV, KEK_LEN, Kek};
pub use keyfile::{KeyFileSlot, NewKey, new_key};
pub use metrics::IamMetrics;
pub use model::{Account, KeyAlgorithm, KeyServerUrl, KeyStatus, StoredKey};
pub use readiness::{ProbeSettings, StoreProbe, StoreState};
pub use roles::{BindingFilter, Denied, Grant, Role, RoleBinding};
pub use server::{
    CACHE_MAX_AGE_SECS, CHECK_BODY_LIMIT, serve, serve_observed, serve_pool, serve_tokens,
    serve_with,
};
pub use service_roles::{ServiceBindingFilter, ServiceRole, ServiceRoleBinding};
pub use store::{
    CopyReport, LooseFile, MAX_POOL_SIZE, Migration, PoolSettings, SCHEMA_VERSION, Store,
    StoreLocation, StorePool, copy_store, loose_files,
};
pub use token::{TokenService, TokenServiceSettings};

/// The default store file, in the working directory.
pub const DEFAULT_STORE: &str = "esprit-iam.db";

/// The environment variable that names the store (a SQLite file or a `postgres://` URL).
pub const STORE_ENV: &str = "ESPRIT_IAM_STORE";
