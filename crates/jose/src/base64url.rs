//! Strict base64url, as RFC 7515 section 2 defines it for JWS segments.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes base64url without padding. Rejects `=`, whitespace, characters outside the
/// URL-safe alphabet and non-zero trailing bits, so each byte string has exactly one accepted
/// encoding (Wycheproof's malleability cases depend on this).
pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Decodes a JWK member. Key material is not signed data, so a trailing `=` padding that some
/// key servers emit is tolerated; everything else is as strict as [`decode`].
pub(crate) fn decode_key_member(s: &str) -> Option<Vec<u8>> {
    decode(s.trim_end_matches('='))
}

/// Encodes as base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
