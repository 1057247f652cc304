//! `iam`: service accounts and their keys for esprit, compatible with Google's.
//!
//! What it does: keeps service accounts (`NAME@PROJECT.iam.gserviceaccount.com`) and the
//! *public* halves of their keys in a SQLite file ([`Store`]); makes new keys as Google does
//! (RSA 2048 or P-256, a 40-hex key id, a self-signed X.509 certificate) and writes the Google
//! JSON key file with the private key to the one file the user asked for, mode 0600
//! ([`Store::create_key`]); and serves the public keys at Google's paths, as the X.509 map and
//! as a JWKS ([`serve`]), so that tokens signed with the key files verify through esprit or any
//! verifier that trusts Google's formats.
//!
//! What it deliberately does not do: it never stores or serves a private key (the key file is
//! the only copy); it mints no tokens (that is `jose::Signer`, driven by `esprit token`); it
//! implements no OAuth token endpoint, IAM policies or API keys (the router reserves
//! `POST /v1/services/{service}:check` for the latter and answers 501); it has no TLS (run it
//! on loopback or behind a TLS terminator).
//!
//! Validation, key-file building and the rendering of key documents are plain functions
//! ([`validate_account_id`], [`new_key`], [`render::x509_map`], [`render::jwks`]); files and
//! sockets are in [`Store`], [`KeyFileSlot`] and [`serve`].

mod error;
mod ids;
mod keyfile;
mod model;
pub mod render;
mod server;
mod store;

pub use error::{IamError, Result};
pub use ids::{
    EMAIL_DOMAIN, account_email, decode_path_segment, encode_path_segment, validate_account_id,
    validate_project_id,
};
pub use keyfile::{KeyFileSlot, NewKey, new_key};
pub use model::{Account, KeyAlgorithm, KeyServerUrl, KeyState, StoredKey};
pub use server::{CACHE_MAX_AGE_SECS, serve};
pub use store::{SCHEMA_VERSION, Store};

/// The default store file, in the working directory.
pub const DEFAULT_STORE: &str = "esprit-iam.db";

/// The environment variable that names the store file.
pub const STORE_ENV: &str = "ESPRIT_IAM_STORE";
