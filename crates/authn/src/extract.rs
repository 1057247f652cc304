//! Finding tokens in a request: headers (with an optional value prefix) and query parameters.

use http::{HeaderMap, HeaderValue, Uri};
use jose::JoseError;

use crate::AuthError;
use crate::policy::{HeaderKey, Prefix, TokenSource};

/// What to do with each token found; an `Err` given to it is a token that is not even text.
pub(crate) type OnToken<'f> = dyn FnMut(Result<&str, AuthError>) -> Result<(), AuthError> + 'f;

/// Calls `found` with every token at `source`, in order, stopping at the first error.
///
/// A header value that does not start with the location's prefix is not a token for this
/// location (an `Authorization: Basic …` header carries no JWT). Every other value is: each
/// value of a repeated header, and each repeated query parameter, is a separate token that must
/// validate. A value that is not text is handed over as a malformed token, never ignored.
pub(crate) fn for_each_token(
    source: &TokenSource,
    headers: &HeaderMap,
    uri: &Uri,
    found: &mut OnToken<'_>,
) -> Result<(), AuthError> {
    match source {
        TokenSource::Header { name, prefix } => match name {
            HeaderKey::Name(name) => {
                for value in headers.get_all(name) {
                    header_token(value, prefix, found)?;
                }
                Ok(())
            }
            HeaderKey::Raw(raw) => {
                for (_, value) in headers.iter().filter(|(n, _)| n.as_str() == raw) {
                    header_token(value, prefix, found)?;
                }
                Ok(())
            }
        },
        TokenSource::Query { name } => {
            let Some(query) = uri.query() else {
                return Ok(());
            };
            // Percent-decoded (and `+` as space, which base64url never contains).
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                if key == name.as_str() {
                    found(Ok(value.trim_ascii()))?;
                }
            }
            Ok(())
        }
    }
}

fn header_token(
    value: &HeaderValue,
    prefix: &Prefix,
    found: &mut OnToken<'_>,
) -> Result<(), AuthError> {
    let Some(rest) = strip_prefix(value.as_bytes(), prefix) else {
        return Ok(());
    };
    match std::str::from_utf8(rest.trim_ascii()) {
        Ok(token) => found(Ok(token)),
        Err(_) => found(Err(AuthError::Malformed(JoseError::BadFormat))),
    }
}

fn strip_prefix<'v>(value: &'v [u8], prefix: &Prefix) -> Option<&'v [u8]> {
    match prefix {
        Prefix::None => Some(value),
        Prefix::Exact(p) => value.strip_prefix(p.as_bytes()),
        Prefix::CaseInsensitive(p) => {
            let (head, rest) = value.split_at_checked(p.len())?;
            head.eq_ignore_ascii_case(p.as_bytes()).then_some(rest)
        }
    }
}
