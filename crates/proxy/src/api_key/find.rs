//! Where a request carries its API key: a pure function of the request.

use std::borrow::Cow;

use service_config::ApiKeyLocation;

/// The first API key at `locations`, in their order (ESP: query `key`, query `api_key`, header
/// `x-api-key`, unless `system_parameters` say otherwise). Header names are compared
/// case-insensitively; query values are percent-decoded.
pub fn find_api_key<'r>(
    locations: &[ApiKeyLocation],
    headers: &'r http::HeaderMap,
    uri: &'r http::Uri,
) -> Option<Cow<'r, str>> {
    for location in locations {
        match location {
            ApiKeyLocation::Query(name) => {
                let found = uri.query().and_then(|query| {
                    form_urlencoded::parse(query.as_bytes())
                        .find(|(k, v)| k == name && !v.is_empty())
                        .map(|(_, v)| v)
                });
                if let Some(value) = found {
                    return Some(value);
                }
            }
            ApiKeyLocation::Header(name) => {
                let found = headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::trim)
                    .find(|v| !v.is_empty());
                if let Some(value) = found {
                    return Some(Cow::Borrowed(value));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locations_in_order() {
        let defaults = ApiKeyLocation::defaults();
        // (URI, headers, the key found)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Case] = &[
            ("/m?key=q1&api_key=q2", &[("x-api-key", "h")], Some("q1")),
            ("/m?api_key=q2", &[("x-api-key", "h")], Some("q2")),
            ("/m", &[("x-api-key", "h")], Some("h")),
            ("/m?key=a%2Bb%20c", &[], Some("a+b c")),
            ("/m?key=", &[("x-api-key", "h")], Some("h")),
            ("/m?other=1", &[], None),
            ("/m", &[("x-api-key", "")], None),
            ("/m", &[], None),
        ];
        for (uri, headers, want) in table {
            let uri: http::Uri = uri.parse().unwrap();
            let mut map = http::HeaderMap::new();
            for (k, v) in *headers {
                map.insert(*k, v.parse().unwrap());
            }
            assert_eq!(
                find_api_key(&defaults, &map, &uri).as_deref(),
                *want,
                "{uri}"
            );
        }
    }

    #[test]
    fn configured_locations_replace_the_defaults() {
        let locations = vec![ApiKeyLocation::Header("X-My-Key".into())];
        let uri: http::Uri = "/m?key=q".parse().unwrap();
        let mut map = http::HeaderMap::new();
        map.insert("x-my-key", "mine".parse().unwrap());
        map.insert("x-api-key", "default".parse().unwrap());
        assert_eq!(
            find_api_key(&locations, &map, &uri).as_deref(),
            Some("mine")
        );
    }
}
