//! `authentication.providers[]`: issuers, key URLs, audiences and token locations.

use std::collections::HashMap;

use super::{present, split_audiences};
use crate::error::ConfigError;
use crate::model::{AuthProvider, ExpClaim, Issuer, JwksUri, JwtLocation, ProviderId};
use crate::raw;
use crate::uri::check_url;

pub(super) fn build_providers(
    providers: Vec<raw::AuthProvider>,
    errors: &mut Vec<ConfigError>,
) -> Vec<AuthProvider> {
    let mut first_path: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        let base = format!("authentication.providers[{i}]");
        let mut ok = true;
        let id = present(&provider.id);
        match id {
            None => {
                errors.push(ConfigError::MissingField {
                    path: format!("{base}.id"),
                });
                ok = false;
            }
            Some(id) => {
                let path = format!("{base}.id");
                if let Some(first) = first_path.get(id) {
                    errors.push(ConfigError::DuplicateProvider {
                        path,
                        id: id.to_owned(),
                        first: first.clone(),
                    });
                    ok = false;
                } else {
                    first_path.insert(id.to_owned(), path);
                }
            }
        }
        let issuer = present(&provider.issuer);
        if issuer.is_none() {
            errors.push(ConfigError::MissingField {
                path: format!("{base}.issuer"),
            });
            ok = false;
        }
        let jwks_uri = present(&provider.jwks_uri);
        if let Some(url) = jwks_uri
            && let Err(reason) = check_url(url)
        {
            errors.push(ConfigError::MalformedUrl {
                path: format!("{base}.jwks_uri"),
                url: url.to_owned(),
                reason,
            });
            ok = false;
        }
        let locations = build_jwt_locations(provider.jwt_locations.as_deref(), &base, errors);
        if let (true, Some(id), Some(issuer), Some(jwt_locations)) = (ok, id, issuer, locations) {
            out.push(AuthProvider {
                id: ProviderId::new(id),
                issuer: Issuer::new(issuer),
                // No jwks_uri: the proxy discovers it via OpenID configuration, never at load.
                jwks_uri: jwks_uri.map(JwksUri::new),
                audiences: split_audiences(&provider.audiences),
                jwt_locations,
                exp: if provider.x_esprit_allow_missing_exp.unwrap_or(false) {
                    ExpClaim::Optional
                } else {
                    ExpClaim::Required
                },
            });
        }
    }
    out
}

/// `None` when any location is invalid (already reported).
fn build_jwt_locations(
    locations: Option<&[raw::JwtLocation]>,
    base: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<JwtLocation>> {
    let locations = locations.unwrap_or_default();
    if locations.is_empty() {
        // docs/esp-compatibility.md: default token locations when `jwt_locations` is empty.
        return Some(JwtLocation::defaults());
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (j, location) in locations.iter().enumerate() {
        let path = format!("{base}.jwt_locations[{j}]");
        let mut invalid = |message: &str| {
            errors.push(ConfigError::InvalidValue {
                path: path.clone(),
                message: message.to_owned(),
            });
        };
        let header = present(&location.header);
        let query = present(&location.query);
        let prefix = location.value_prefix.clone().filter(|p| !p.is_empty());
        if present(&location.cookie).is_some() {
            // ESPv2 does not support cookie locations either.
            invalid("cookie locations are not supported");
            ok = false;
            continue;
        }
        match (header, query) {
            (Some(name), None) if is_http_token(name) => out.push(JwtLocation::Header {
                name: name.to_owned(),
                value_prefix: prefix,
            }),
            (Some(_), None) => {
                invalid("header is not a valid HTTP header name");
                ok = false;
            }
            (None, Some(name)) if prefix.is_none() => out.push(JwtLocation::Query {
                name: name.to_owned(),
            }),
            (None, Some(_)) => {
                invalid("value_prefix applies only to header locations");
                ok = false;
            }
            (Some(_), Some(_)) | (None, None) => {
                invalid("set exactly one of header or query");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// RFC 9110 token characters.
pub(super) fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
