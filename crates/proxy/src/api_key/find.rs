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

    mod properties {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary query strings and header values: no panic; a key found is never empty,
            /// and comes from a location that was asked for.
            #[test]
            fn arbitrary_requests(
                query in "[ -~]{0,60}",
                values in proptest::collection::vec(proptest::collection::vec(0x20u8..0x7f, 0..20), 0..4),
                other in proptest::collection::vec(0x20u8..0x7f, 0..20),
            ) {
                let Ok(uri) = format!("/m?{query}").parse::<http::Uri>() else {
                    return Ok(());
                };
                let mut headers = http::HeaderMap::new();
                for value in &values {
                    headers.append("x-api-key", http::HeaderValue::from_bytes(value).unwrap());
                }
                headers.append("x-other", http::HeaderValue::from_bytes(&other).unwrap());
                let found = find_api_key(&ApiKeyLocation::defaults(), &headers, &uri);
                if let Some(key) = &found {
                    prop_assert!(!key.is_empty());
                }
                // Header locations only: the key is a trimmed, non-empty x-api-key value.
                let header_only = [ApiKeyLocation::Header("x-api-key".into())];
                match find_api_key(&header_only, &headers, &uri) {
                    Some(key) => {
                        prop_assert_eq!(key.trim(), &*key);
                        prop_assert!(!key.is_empty());
                        prop_assert!(values.iter().any(|v| std::str::from_utf8(v).unwrap().trim() == key));
                    }
                    None => prop_assert!(values.iter().all(|v| std::str::from_utf8(v).unwrap().trim().is_empty())),
                }
                // Query locations only: nothing unless the parameter is in the query.
                let query_only = [ApiKeyLocation::Query("key".into())];
                if !query.contains("key=") {
                    prop_assert!(find_api_key(&query_only, &headers, &uri).is_none());
                }
            }
        }
    }
}
