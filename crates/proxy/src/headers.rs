//! Header hygiene between client and backend.

use http::HeaderMap;
use http::header::HeaderName;

/// Headers the proxy vouches for towards the backend. A client must never be able to send them:
/// every request has all copies removed before anything else looks at it, whatever the method,
/// whatever the case, and with `_` in place of `-` (some servers treat the two alike).
pub const VOUCHED: &[&str] = &["x-endpoint-api-userinfo", "x-endpoint-api-consumer-project"];

/// Connection-specific headers (RFC 9110 §7.6.1, RFC 9113 §8.2.2) that must not cross a proxy.
/// `te: trailers` is the one `te` value HTTP/2 allows and gRPC needs, so it is kept.
/// `connection`, `transfer-encoding` and `upgrade` are `http` constants (compared as such);
/// these two are not.
const OTHER_HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];

fn is_vouched(name: &HeaderName) -> bool {
    let name = name.as_str();
    VOUCHED.iter().any(|v| {
        v.len() == name.len()
            && v.bytes()
                .zip(name.bytes())
                // HeaderName is already lowercase; only `_` vs `-` remains to fold.
                .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
    })
}

/// Connection-specific headers: `connection`, `keep-alive`, `proxy-connection`,
/// `transfer-encoding`, `upgrade`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == http::header::CONNECTION
        || name == http::header::TRANSFER_ENCODING
        || name == http::header::UPGRADE
        || OTHER_HOP_BY_HOP.contains(&name.as_str())
}

/// Removes vouched and hop-by-hop headers from a client's request.
///
/// One pass over the names, no allocation unless something must go (rare): this runs on every
/// call.
pub fn sanitize_request(headers: &mut HeaderMap) {
    remove_where(headers, |name| is_vouched(name) || is_hop_by_hop(name));
    if headers
        .get(http::header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(http::header::TE);
    }
}

/// Removes hop-by-hop headers from a backend's response.
pub fn sanitize_response(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        is_hop_by_hop(name) || name == http::header::TE
    });
}

fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let mut found: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if doomed(name) {
            found.push(name.clone());
        }
    }
    for name in found {
        headers.remove(&name);
    }
}

/// Whether the request is a gRPC call (`content-type: application/grpc` or `application/grpc+…`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct == "application/grpc"
                || ct.starts_with("application/grpc+")
                || ct.starts_with("application/grpc;")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling_of_vouched_headers() {
        let mut h = HeaderMap::new();
        for name in [
            "x-endpoint-api-userinfo",
            "X-Endpoint-API-UserInfo",
            "x_endpoint_api_userinfo",
            "X_ENDPOINT_API_USERINFO",
            "x-endpoint_api-userinfo",
            "x-endpoint-api-consumer-project",
            "x_endpoint_api_consumer_project",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "forged".parse().unwrap(),
            );
        }
        h.insert("x-endpoint-api-userinfo-extra", "kept".parse().unwrap());
        h.insert("connection", "close".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        sanitize_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["te", "x-endpoint-api-userinfo-extra"]);
    }

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        for (ct, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(is_grpc(&h), want, "{ct}");
        }
    }
}
