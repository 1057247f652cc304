//! A small syntax check for the URLs a config may hold (`jwks_uri`).

/// Checks that `text` is an absolute `http`, `https` or `file` URL; returns why not.
///
/// Deliberately small: scheme, authority (host or `[IPv6]`, optional port) and no whitespace.
/// It does not normalise anything; the fetcher parses the URL again.
pub(crate) fn check_url(text: &str) -> Result<(), &'static str> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("must be an absolute http, https or file URL");
    };
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match scheme.as_str() {
        "http" | "https" => check_authority(authority),
        "file" => {
            if !path.starts_with('/') || path.len() < 2 {
                return Err("a file URL needs an absolute path (file:///path)");
            }
            Ok(())
        }
        _ => Err("must be an absolute http, https or file URL"),
    }
}

fn check_authority(authority: &str) -> Result<(), &'static str> {
    if authority.contains('@') {
        return Err("credentials in URLs are not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("unterminated IPv6 address");
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("invalid IPv6 address");
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err("invalid characters after IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => {
                if host.is_empty() || !host.split('.').all(is_host_label) {
                    return Err("invalid host");
                }
                (host, Some(port))
            }
            None => {
                if authority.is_empty() || !authority.split('.').all(is_host_label) {
                    return Err("invalid host");
                }
                (authority, None)
            }
        }
    };
    debug_assert!(!host.is_empty());
    if let Some(port) = port
        && !(!port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err("invalid port");
    }
    Ok(())
}

fn is_host_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn accepted() {
        for url in [
            "https://www.googleapis.com/robot/v1/metadata/x509/sa@p.iam.gserviceaccount.com",
            "https://www.googleapis.com/service_accounts/v1/jwk/sa@p.iam.gserviceaccount.com",
            "http://127.0.0.1:8081/jwks",
            "http://localhost",
            "HTTPS://Example.COM/x?y=1#z",
            "http://[::1]:9000/keys",
            "file:///etc/esprit/jwks.json",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn rejected() {
        for url in [
            "ht!tp:/x",
            "www.googleapis.com/robot",
            "/relative/path",
            "ftp://example.com/keys",
            "https://",
            "https:///path",
            "https://exa mple.com/",
            "https://example..com/",
            "https://-bad.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com:/",
            "https://user:pw@example.com/",
            "https://[::1/",
            "file://",
            "file:///",
        ] {
            assert!(check_url(url).is_err(), "{url} should be rejected");
        }
    }
}
