//! W3C Trace Context (Recommendation, level 1): the `traceparent` and `tracestate` request
//! headers read strictly, and the `traceparent` the proxy writes. Pure functions of header
//! values; no clock, no randomness (the ids of a new span come from the tracing SDK).
//!
//! What a client can make the proxy do with these headers is what the spec defines and no
//! more: continue its trace id, take its span as the parent, follow its `sampled` flag, and have
//! a bounded, well-formed `tracestate` passed on. Anything malformed is ignored (a new trace is
//! started); nothing in them is an error for the call.

use http::HeaderValue;
use http::header::{GetAll, HeaderName};

pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `version-traceid-parentid-flags` of version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2.
const TRACEPARENT_LEN: usize = 55;
/// The spec's bound on `tracestate` list-members.
pub(crate) const MAX_TRACESTATE_MEMBERS: usize = 32;
/// What the proxy passes on at most: the spec asks vendors to propagate at least 512
/// characters of the combined header and lets them cut it down to that.
pub(crate) const MAX_TRACESTATE_LEN: usize = 512;
/// Members this long are the first dropped when the header must be cut (the spec's order).
const LONG_MEMBER: usize = 128;
/// Work bound: a `tracestate` longer than this (all its lines together) cannot be 32 valid
/// members and is dropped unread.
const MAX_TRACESTATE_INPUT: usize = MAX_TRACESTATE_MEMBERS * (256 + 1 + 256) + 31 * 3;

/// The caller's place in a trace, from a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    /// The `sampled` flag (bit 0); the other flag bits are not carried further.
    pub sampled: bool,
}

/// The one `traceparent` of a request, if valid. Several `traceparent` lines make the header
/// invalid (it is not a list), as does any deviation from the grammar: upper-case hex, version
/// `ff`, an all-zero trace or parent id, a version-00 value of other than 55 characters.
/// A version above 00 is read as the spec says (its first 55 characters as version 00, then
/// either the end or a `-`).
pub(crate) fn parse_traceparent(values: GetAll<'_, HeaderValue>) -> Option<TraceParent> {
    let mut values = values.iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_traceparent_value(value.as_bytes())
}

pub(crate) fn parse_traceparent_value(value: &[u8]) -> Option<TraceParent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    match version {
        0xff => return None,
        0x00 if value.len() != TRACEPARENT_LEN => return None,
        // A later version: what follows the version-00 fields must start with a `-`.
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    hex_into(&value[3..35], &mut trace_id)?;
    let mut parent_id = [0u8; 8];
    hex_into(&value[36..52], &mut parent_id)?;
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 0x01 != 0,
    })
}

/// The `traceparent` the proxy sends: version 00, its own span as the parent, and only the
/// `sampled` flag (the flag bits the proxy does not know are not passed on).
pub(crate) fn format_traceparent(
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
) -> HeaderValue {
    let mut out = Vec::with_capacity(TRACEPARENT_LEN);
    out.extend_from_slice(b"00-");
    push_hex(&mut out, &trace_id);
    out.push(b'-');
    push_hex(&mut out, &span_id);
    out.extend_from_slice(if sampled { b"-01" } else { b"-00" });
    // Only hex digits and dashes: always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
    })
}

/// A `tracestate` the proxy may pass on: its members (`key=value`, in order, at most 32),
/// joined with `,`, at most [`MAX_TRACESTATE_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    pub(crate) fn members(&self) -> &[(String, String)] {
        &self.members
    }

    /// The header value, or `None` when no member is left.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        if self.members.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(MAX_TRACESTATE_LEN);
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        HeaderValue::from_str(&out).ok()
    }
}

/// Every `tracestate` line of a request, combined as one list (RFC 9110 §5.3). Empty and
/// blank members are allowed and skipped. The whole header is dropped (`None`) when a member is
/// malformed, a key repeats, or there are more than 32 members; a valid header longer than 512
/// bytes loses its members over 128 bytes first, then members from the end, until it fits.
pub(crate) fn parse_tracestate(values: GetAll<'_, HeaderValue>) -> Option<TraceState> {
    let total: usize = values.iter().map(|v| v.len() + 1).sum();
    if total > MAX_TRACESTATE_INPUT {
        return None;
    }
    let mut members: Vec<(String, String)> = Vec::new();
    for value in values.iter() {
        let text = value.to_str().ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(value) {
                return None;
            }
            if members.len() == MAX_TRACESTATE_MEMBERS || members.iter().any(|(k, _)| k == key) {
                return None;
            }
            members.push((key.to_owned(), value.to_owned()));
        }
    }
    Some(TraceState {
        members: bound_length(members),
    })
}

/// The spec's cutting order for a header over [`MAX_TRACESTATE_LEN`].
fn bound_length(mut members: Vec<(String, String)>) -> Vec<(String, String)> {
    let size = |m: &[(String, String)]| {
        m.iter().map(|(k, v)| k.len() + 1 + v.len()).sum::<usize>() + m.len().saturating_sub(1)
    };
    if size(&members) <= MAX_TRACESTATE_LEN {
        return members;
    }
    members.retain(|(k, v)| k.len() + 1 + v.len() <= LONG_MEMBER);
    while size(&members) > MAX_TRACESTATE_LEN {
        members.pop();
    }
    members
}

/// `simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or
/// `tenant-id "@" system-id` with `tenant-id = (lcalpha / DIGIT) 0*240(…)` and
/// `system-id = lcalpha 0*13(…)`.
fn valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    let rest_ok = |s: &[u8]| {
        s.iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    };
    match key.iter().position(|&b| b == b'@') {
        None => (1..=256).contains(&key.len()) && key[0].is_ascii_lowercase() && rest_ok(&key[1..]),
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && rest_ok(&tenant[1..])
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && rest_ok(&system[1..])
        }
    }
}

/// `value = 0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters but `,` and `=`, not
/// ending in a space.
fn valid_value(value: &str) -> bool {
    let value = value.as_bytes();
    (1..=256).contains(&value.len())
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// Two lower-case hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?)
}

fn hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

/// Lower case only: the spec's HEXDIGLC.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

#[cfg(test)]
mod tests;
