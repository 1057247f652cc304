//! JWT (RFC 7519): a JWS whose payload is a JSON object of claims.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::{Header, JoseError, Jws, TimeClaim, UnixTime};

/// The claims of a JWT. Registered claims are typed; all claims, registered ones included,
/// are in [`Claims::all`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, a string or a list of strings on the wire; empty when absent.
    pub aud: Vec<String>,
    /// `exp`.
    pub exp: Option<UnixTime>,
    /// `nbf`.
    pub nbf: Option<UnixTime>,
    /// `iat`.
    pub iat: Option<UnixTime>,
    /// The whole payload object.
    pub all: Map<String, Value>,
}

/// The registered claims as a struct, so that serde rejects a repeated one: with two `exp`
/// members, implementations disagree on which wins.
#[derive(Deserialize)]
#[allow(dead_code)] // read only for serde's duplicate check
struct RawClaims {
    iss: Option<IgnoredAny>,
    sub: Option<IgnoredAny>,
    aud: Option<IgnoredAny>,
    exp: Option<IgnoredAny>,
    nbf: Option<IgnoredAny>,
    iat: Option<IgnoredAny>,
}

/// A parsed, not yet verified, JWT.
#[derive(Clone, Debug)]
pub struct Jwt {
    jws: Jws,
    claims: Claims,
}

impl Jwt {
    /// Parses a compact JWT: [`Jws::parse`], then the payload as a JSON object with typed
    /// registered claims. Nothing here is trusted until [`crate::verify`] succeeds.
    pub fn parse(token: &str) -> Result<Jwt, JoseError> {
        let jws = Jws::parse(token)?;
        let claims = parse_claims(jws.payload())?;
        Ok(Jwt { jws, claims })
    }

    /// The signature layer, for [`crate::verify`].
    pub fn jws(&self) -> &Jws {
        &self.jws
    }

    /// The header.
    pub fn header(&self) -> &Header {
        self.jws.header()
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The payload segment as in the token (base64url, no padding); ESPv2 forwards it as
    /// `X-Endpoint-API-UserInfo`.
    pub fn payload_segment(&self) -> &str {
        self.jws.payload_segment()
    }
}

fn parse_claims(payload: &[u8]) -> Result<Claims, JoseError> {
    let all = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => map,
        _ => return Err(JoseError::PayloadBadJson),
    };
    // A present `null` is "present", not "absent": take values from the map, not the struct.
    let _: RawClaims = serde_json::from_slice(payload).map_err(|_| JoseError::PayloadBadJson)?;
    let get = |name: &str| all.get(name).cloned();
    let iss = optional_string(get("iss"), JoseError::IssNotString)?;
    let sub = optional_string(get("sub"), JoseError::SubNotString)?;
    let aud = match get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a],
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|v| match v {
                Value::String(a) => Ok(a),
                _ => Err(JoseError::AudNotString),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JoseError::AudNotString),
    };
    Ok(Claims {
        iss,
        sub,
        aud,
        exp: time_claim(get("exp"), TimeClaim::Exp)?,
        nbf: time_claim(get("nbf"), TimeClaim::Nbf)?,
        iat: time_claim(get("iat"), TimeClaim::Iat)?,
        all,
    })
}

fn optional_string(v: Option<Value>, err: JoseError) -> Result<Option<String>, JoseError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err),
    }
}

/// A NumericDate must be a JSON integer. A float (`1.5`, also `1.0`), a string or `null` is an
/// error, never "absent" (CVE-2026-25537 was treating a wrongly typed `exp` as absent).
fn time_claim(v: Option<Value>, claim: TimeClaim) -> Result<Option<UnixTime>, JoseError> {
    let Some(v) = v else { return Ok(None) };
    match v {
        Value::Number(n) if n.is_u64() => n
            .as_u64()
            .map(|t| Some(UnixTime(t)))
            .ok_or(JoseError::NotInteger(claim)),
        Value::Number(n) if n.is_i64() => Err(JoseError::NotPositive(claim)),
        _ => Err(JoseError::NotInteger(claim)),
    }
}
