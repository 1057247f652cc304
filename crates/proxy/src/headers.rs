//! Header hygiene between client and backend.

use std::net::{IpAddr, SocketAddr};

use http::header::HeaderName;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue};

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

/// Removes vouched and hop-by-hop headers, and `host`, from a client's request.
///
/// `host` goes because the backend is addressed by `:authority`, which the proxy rewrites to the
/// backend: a client's `Host` beside it would be an attacker-chosen value (RFC 9113 §8.3.1 wants
/// the two to agree; strict servers refuse the call). The client's authority reaches the backend
/// as `x-forwarded-host` instead (see [`set_forwarding`]).
///
/// One pass over the names, no allocation unless something must go (rare): this runs on every
/// call.
pub fn sanitize_request(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        is_vouched(name) || is_hop_by_hop(name) || name == http::header::HOST
    });
    if headers
        .get(http::header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(http::header::TE);
    }
}

/// Removes from a client's request trailers what must not reach the backend from a client in any
/// part of the request: vouched names (every spelling), hop-by-hop names, `te`, `host` and the
/// forwarding headers the proxy writes itself. Trailers are rare; this runs only when one comes.
pub fn sanitize_trailers(trailers: &mut HeaderMap) {
    remove_where(trailers, |name| {
        is_vouched(name)
            || is_hop_by_hop(name)
            || name == http::header::TE
            || name == http::header::HOST
            || FORWARDING.contains(&name.as_str())
    });
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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The forwarding headers the proxy writes on every forwarded request.
const FORWARDING: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

/// How the proxy writes `x-forwarded-*` (README: "Client address and forwarding headers").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarding {
    /// Proxies in front of this one whose `x-forwarded-for` entries are trusted (Envoy's
    /// `xff_num_trusted_hops`). 0: the TCP peer is the client.
    pub trusted_hops: usize,
    /// Whether the listener serves TLS (`x-forwarded-proto: https`).
    pub tls: bool,
}

/// The TCP peer of a connection, with its `x-forwarded-for` entry formatted once when the
/// connection is accepted rather than on every call.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    ip: IpAddr,
    /// The peer's address as an `x-forwarded-for` entry.
    entry: HeaderValue,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_canonical();
        // An IP address is always a valid header value.
        let entry = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, ip, entry }
    }
}

/// Rewrites the forwarding headers of a request about to be forwarded and returns the client
/// address the proxy derived (the TCP peer, or the address the outermost trusted proxy saw).
///
/// - `x-forwarded-for`: the last `trusted_hops` entries of the client's list (appended by the
///   trusted proxies in front of us), then the peer. Everything a client could have written itself
///   is dropped, so the first entry is always an address some trusted hop saw. If the list holds
///   fewer than `trusted_hops` entries, or one of them is not an IP address, none are kept.
/// - `x-forwarded-proto`: `http` or `https` as this listener serves; with trusted hops, a trusted
///   proxy's `http`/`https` is kept (it terminated the client's connection).
/// - `x-forwarded-host`: the `:authority` the client sent (the backend sees its own address in
///   `:authority`); client copies are replaced. It is the client's claim, not verified.
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    authority: Option<&Authority>,
    peer: &Peer,
    forwarding: Forwarding,
) -> IpAddr {
    let trusted = trusted_xff_entries(headers, forwarding.trusted_hops);
    let client = trusted.first().copied().unwrap_or(peer.ip);
    let xff = if trusted.is_empty() {
        // The common case (no trusted hops): the peer alone, formatted once per connection.
        Some(peer.entry.clone())
    } else {
        let mut xff = String::with_capacity(16 * (trusted.len() + 1));
        for ip in &trusted {
            xff.push_str(&ip.to_string());
            xff.push_str(", ");
        }
        xff.push_str(&peer.ip.to_string());
        // IP addresses, commas and spaces: always a valid header value.
        HeaderValue::from_str(&xff).ok()
    };
    let proto = match headers.get(&X_FORWARDED_PROTO).map(HeaderValue::as_bytes) {
        Some(b"https") if forwarding.trusted_hops > 0 => "https",
        Some(b"http") if forwarding.trusted_hops > 0 => "http",
        _ if forwarding.tls => "https",
        _ => "http",
    };
    match xff {
        Some(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        None => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        Some(value) => {
            headers.insert(X_FORWARDED_HOST, value);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    client
}

/// The last `hops` entries of every `x-forwarded-for` line (in order), if there are that many and
/// all are IP addresses; otherwise none.
fn trusted_xff_entries(headers: &HeaderMap, hops: usize) -> Vec<IpAddr> {
    if hops == 0 {
        return Vec::new();
    }
    let mut entries: Vec<&str> = Vec::new();
    for line in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(line) = line.to_str() else {
            return Vec::new();
        };
        entries.extend(line.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    if entries.len() < hops {
        return Vec::new();
    }
    entries[entries.len() - hops..]
        .iter()
        .map(|e| e.parse::<IpAddr>().map(|ip| ip.to_canonical()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default()
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
        h.insert("host", "attacker.example".parse().unwrap());
        sanitize_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["te", "x-endpoint-api-userinfo-extra"]);
    }

    fn forward(xff: &[&str], proto: Option<&str>, hops: usize) -> (HeaderMap, IpAddr) {
        let mut h = HeaderMap::new();
        for line in xff {
            h.append("x-forwarded-for", line.parse().unwrap());
        }
        if let Some(proto) = proto {
            h.insert("x-forwarded-proto", proto.parse().unwrap());
        }
        h.insert("x-forwarded-host", "forged.example".parse().unwrap());
        let authority: Authority = "api.example.com:443".parse().unwrap();
        let peer: SocketAddr = "[::ffff:192.0.2.7]:5555".parse().unwrap();
        let forwarding = Forwarding {
            trusted_hops: hops,
            tls: false,
        };
        let client = set_forwarding(&mut h, Some(&authority), &Peer::new(peer), forwarding);
        (h, client)
    }

    #[test]
    fn forwarding_headers_table() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        // (client XFF lines, hops, expected XFF, expected client)
        let table: &[(&[&str], usize, &str, &str)] = &[
            (&[], 0, "192.0.2.7", "192.0.2.7"),
            (&["6.6.6.6"], 0, "192.0.2.7", "192.0.2.7"),
            (&["6.6.6.6, 10.0.0.1"], 1, "10.0.0.1, 192.0.2.7", "10.0.0.1"),
            (
                &["6.6.6.6", "203.0.113.5, 10.0.0.1"],
                2,
                "203.0.113.5, 10.0.0.1, 192.0.2.7",
                "203.0.113.5",
            ),
            // Fewer entries than trusted hops, or a non-address among them: none are kept.
            (&["10.0.0.1"], 2, "192.0.2.7", "192.0.2.7"),
            (&["6.6.6.6, unknown"], 1, "192.0.2.7", "192.0.2.7"),
            (&["unknown, 10.0.0.1"], 1, "10.0.0.1, 192.0.2.7", "10.0.0.1"),
            (
                &[" , ,2001:db8::1 "],
                1,
                "2001:db8::1, 192.0.2.7",
                "2001:db8::1",
            ),
        ];
        for (lines, hops, want_xff, want_client) in table {
            let (h, client) = forward(lines, None, *hops);
            let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
            assert_eq!(xff, vec![*want_xff], "{lines:?} hops={hops}");
            assert_eq!(client.to_string(), *want_client, "{lines:?} hops={hops}");
            assert_eq!(h["x-forwarded-host"], "api.example.com:443");
        }
        assert_eq!(forward(&[], None, 0).1, peer);
    }

    /// Every call forwards its own authority, whatever the connection's earlier calls sent.
    #[test]
    fn forwarded_host_follows_each_calls_authority() {
        let peer = Peer::new("192.0.2.7:5555".parse().unwrap());
        let forwarding = Forwarding {
            trusted_hops: 0,
            tls: false,
        };
        for authority in [
            "a.example:443",
            "a.example:443",
            "b.example",
            "a.example:443",
        ] {
            let authority: Authority = authority.parse().unwrap();
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-host", "forged.example".parse().unwrap());
            set_forwarding(&mut h, Some(&authority), &peer.clone(), forwarding);
            let hosts: Vec<_> = h.get_all("x-forwarded-host").iter().collect();
            assert_eq!(hosts, vec![authority.as_str()]);
        }
    }

    #[test]
    fn forwarded_proto_is_ours_unless_a_trusted_hop_set_it() {
        assert_eq!(
            forward(&[], Some("https"), 0).0["x-forwarded-proto"],
            "http"
        );
        assert_eq!(
            forward(&[], Some("https"), 1).0["x-forwarded-proto"],
            "https"
        );
        assert_eq!(
            forward(&[], Some("gopher"), 1).0["x-forwarded-proto"],
            "http"
        );
        let mut h = HeaderMap::new();
        let tls = Forwarding {
            trusted_hops: 0,
            tls: true,
        };
        set_forwarding(
            &mut h,
            None,
            &Peer::new("127.0.0.1:1".parse().unwrap()),
            tls,
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h.get("x-forwarded-host").is_none());
    }

    #[test]
    fn trailers_lose_vouched_hop_by_hop_and_forwarding_names() {
        let mut h = HeaderMap::new();
        for name in [
            "x-endpoint-api-userinfo",
            "x_endpoint_api_consumer_project",
            "connection",
            "te",
            "host",
            "x-forwarded-for",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "forged".parse().unwrap(),
            );
        }
        h.insert("x-checksum", "kept".parse().unwrap());
        sanitize_trailers(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-checksum"]);
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
