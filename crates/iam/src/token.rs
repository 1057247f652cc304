//! The token service of `esprit iam serve --issuer-url`: its signing keys (sealed with the
//! key-encryption key, rotated on a schedule), the ID and access tokens it issues, and keys it
//! holds for accounts (`signJwt`).
//!
//! Pure parts: [`rotation`] (which key signs, which are published, which to create or delete)
//! and [`assertion`] (the checks of an RFC 7523 assertion, ending in a typed refusal). The
//! service ([`TokenService`]) reads the clock and the store around them.

pub mod assertion;
pub mod rotation;
pub(crate) mod service;

pub use service::{
    ACCESS_TOKEN_PREFIX, DEFAULT_ROTATION, ID_TOKEN_LIFETIME_SECS, MAX_ROTATION, MIN_ROTATION,
    PUBLISH_AHEAD_SECS, RETIRE_MARGIN_SECS, TokenService, TokenServiceSettings,
};
