//! Compact JWS (RFC 7515 section 7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(sig)`.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::{Algorithm, JoseError, Kid, base64url};

/// Tokens longer than this many bytes are rejected before any decoding (64 KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The JOSE header members this crate reads. Everything else (notably `jku`, `x5u`, `jwk`,
/// `x5c`, which would let a token name its own key) is ignored on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The token's algorithm. Keys must agree with it; it never selects a key on its own.
    pub alg: Algorithm,
    /// The key id, if present.
    pub kid: Option<Kid>,
    /// The media type, if present and a string.
    pub typ: Option<String>,
}

/// The header as it is on the wire. A struct (not a map) so that serde rejects a repeated
/// `alg`, `kid`, `typ` or `crit`: with duplicates, implementations disagree on which wins.
#[derive(Deserialize)]
#[allow(dead_code)] // read only for serde's duplicate check
struct RawHeader {
    alg: Option<IgnoredAny>,
    kid: Option<IgnoredAny>,
    typ: Option<IgnoredAny>,
    crit: Option<IgnoredAny>,
}

/// A parsed, not yet verified, compact JWS. The payload is arbitrary bytes.
#[derive(Clone, Debug)]
pub struct Jws {
    token: String,
    first_dot: usize,
    second_dot: usize,
    header: Header,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Jws {
    /// Parses a compact JWS. Checks, in order: size, the two dots, header base64url, header
    /// JSON, `alg`, `kid`, `crit`, payload base64url, signature base64url.
    pub fn parse(token: &str) -> Result<Jws, JoseError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JoseError::TooLarge {
                len: token.len(),
                limit: MAX_TOKEN_BYTES,
            });
        }
        let mut dots = token.match_indices('.').map(|(i, _)| i);
        let (Some(first_dot), Some(second_dot), None) = (dots.next(), dots.next(), dots.next())
        else {
            return Err(JoseError::BadFormat);
        };
        let header_b64 = &token[..first_dot];
        let payload_b64 = &token[first_dot + 1..second_dot];
        let signature_b64 = &token[second_dot + 1..];

        let header_bytes = base64url::decode(header_b64).ok_or(JoseError::HeaderBadBase64)?;
        let header = parse_header(&header_bytes)?;
        let payload = base64url::decode(payload_b64).ok_or(JoseError::PayloadBadBase64)?;
        let signature = base64url::decode(signature_b64).ok_or(JoseError::SignatureBadBase64)?;
        Ok(Jws {
            token: token.to_owned(),
            first_dot,
            second_dot,
            header,
            payload,
            signature,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded payload bytes (not yet authenticated).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload segment exactly as in the token (base64url without padding). ESPv2 forwards
    /// this as `X-Endpoint-API-UserInfo`.
    pub fn payload_segment(&self) -> &str {
        &self.token[self.first_dot + 1..self.second_dot]
    }

    /// The bytes the signature covers: `header.payload` as in the token.
    pub fn signing_input(&self) -> &[u8] {
        &self.token.as_bytes()[..self.second_dot]
    }

    /// The decoded signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The whole token as given.
    pub fn as_str(&self) -> &str {
        &self.token
    }
}

fn parse_header(bytes: &[u8]) -> Result<Header, JoseError> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(JoseError::HeaderBadJson);
    };
    let _: RawHeader = serde_json::from_slice(bytes).map_err(|_| JoseError::HeaderBadJson)?;
    // Values come from the map so that a present `null` counts as present.
    let alg = match map.get("alg") {
        Some(Value::String(alg)) => alg.parse::<Algorithm>()?,
        _ => return Err(JoseError::HeaderBadAlg),
    };
    let kid = match map.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(Kid(kid.clone())),
        Some(_) => return Err(JoseError::HeaderBadKid),
    };
    // RFC 7515 section 4.1.11: a recipient that does not understand an extension named in
    // `crit` must reject. We implement none, so any `crit` at all is a rejection.
    if map.contains_key("crit") {
        return Err(JoseError::CritNotSupported);
    }
    let typ = match map.get("typ") {
        Some(Value::String(typ)) => Some(typ.clone()),
        _ => None,
    };
    Ok(Header { alg, kid, typ })
}
