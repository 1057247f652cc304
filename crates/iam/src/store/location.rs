//! Where the store is (`--store` / `$ESPRIT_IAM_STORE`): a SQLite path or a PostgreSQL URL,
//! shown with its password left out; and what a URL's `sslmode` / `sslrootcert` make of the
//! connection (libpq's semantics, see [`tls_plan`]).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use percent_encoding::percent_decode_str;

/// Where the store is: `--store` / `$ESPRIT_IAM_STORE`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, `postgres://` or `postgresql://` URL (libpq's URL form).
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://…` and `postgresql://…` name a PostgreSQL database, anything else a SQLite
    /// file.
    pub fn parse(text: &str) -> StoreLocation {
        if is_postgres_url(text) {
            StoreLocation::Postgres(text.to_owned())
        } else {
            StoreLocation::Sqlite(PathBuf::from(text))
        }
    }
}

fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl FromStr for StoreLocation {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Ok(StoreLocation::parse(text))
    }
}

impl fmt::Display for StoreLocation {
    /// The file, or the URL with its password left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

impl From<&Path> for StoreLocation {
    fn from(path: &Path) -> Self {
        StoreLocation::Sqlite(path.to_owned())
    }
}

impl From<&PathBuf> for StoreLocation {
    fn from(path: &PathBuf) -> Self {
        StoreLocation::Sqlite(path.clone())
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(path: PathBuf) -> Self {
        StoreLocation::Sqlite(path)
    }
}

impl From<&StoreLocation> for StoreLocation {
    fn from(location: &StoreLocation) -> Self {
        location.clone()
    }
}

/// `url` with the password (in the user part or a `password=` parameter) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match base.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((user, host)) => {
                    match user.split_once(':') {
                        Some((name, _)) => {
                            out.push_str(name);
                            out.push_str(":***");
                        }
                        None => out.push_str(user),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The certificates that a checked server certificate must chain to (`sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// A PEM file of CA certificates (`sslrootcert=FILE`).
    File(PathBuf),
    /// The system's roots (`sslrootcert=system`, or a `verify-*` mode without `sslrootcert`).
    System,
}

/// A store URL's TLS parameters, which esprit reads itself (the `postgres` client knows neither
/// `verify-ca`/`verify-full` nor `sslrootcert`), and the URL without them for the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// The URL without `sslmode` and `sslrootcert`.
    pub(crate) url: String,
    pub(crate) mode: Option<SslMode>,
    pub(crate) root_certs: Option<RootCerts>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL. The error never repeats the
/// URL (it may hold a password).
pub(crate) fn split_tls_params(url: &str) -> Result<UrlTls, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => {
            return Ok(UrlTls {
                url: url.to_owned(),
                mode: None,
                root_certs: None,
            });
        }
    };
    let (mut mode, mut root_certs, mut kept) = (None, None, Vec::new());
    for param in query.split('&') {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let decoded = || {
            percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{name} is not UTF-8"))
        };
        match name {
            "sslmode" => {
                let value = decoded()?;
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "sslmode={value}: not one of disable, allow, prefer, require, verify-ca, \
                         verify-full"
                    )
                })?);
            }
            "sslrootcert" => {
                let value = decoded()?;
                root_certs = Some(match value.as_str() {
                    "" => return Err("sslrootcert is empty".into()),
                    "system" => RootCerts::System,
                    file => RootCerts::File(PathBuf::from(file)),
                });
            }
            _ => kept.push(param),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(UrlTls {
        url,
        mode,
        root_certs,
    })
}

/// Where one of the URL's hosts is, as far as TLS is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// A Unix socket: never TLS (PostgreSQL does not speak it there, and libpq does not ask).
    Socket,
    /// TCP to this machine: `localhost` or a loopback address.
    Loopback,
    /// TCP to anywhere else.
    Remote,
}

/// The kind of a TCP host named `host`, connected at `hostaddr` when the URL gives one. Names
/// other than `localhost` are not resolved: they count as remote.
pub(crate) fn tcp_host_kind(host: Option<&str>, hostaddr: Option<IpAddr>) -> HostKind {
    let loopback = match (hostaddr, host) {
        (Some(addr), _) => addr.is_loopback(),
        (None, Some(name)) => {
            let name = name.trim_end_matches('.');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        (None, None) => false,
    };
    if loopback {
        HostKind::Loopback
    } else {
        HostKind::Remote
    }
}

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Not at all (`require`, `prefer`): encryption against a passive eavesdropper only.
    Nothing,
    /// The chain up to a root (`verify-ca`, or any TLS mode with `sslrootcert`), any host name.
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// What a connection does about TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsPlan {
    /// In clear: `sslmode=disable`, or Unix sockets only.
    Off,
    /// TLS when the server offers it, else in clear (libpq's `prefer`, loopback only).
    Prefer(Verify),
    /// TLS or no connection.
    Require(Verify),
}

/// libpq's `sslmode` semantics, with one deliberate difference: `prefer` (the default) and
/// `allow` fall back to clear text only on loopback; to any other host they require TLS (a
/// store holds the keys that the key server publishes, and the password crosses the network).
/// A Unix socket is never TLS, whatever the mode (as libpq). An `sslrootcert` makes every TLS
/// mode check the chain (as libpq does when its root file exists).
pub(crate) fn tls_plan(mode: Option<SslMode>, has_root_certs: bool, hosts: &[HostKind]) -> TlsPlan {
    if hosts.iter().all(|h| *h == HostKind::Socket) || mode == Some(SslMode::Disable) {
        return TlsPlan::Off;
    }
    let verify = match mode {
        Some(SslMode::VerifyFull) => Verify::ChainAndName,
        Some(SslMode::VerifyCa) => Verify::Chain,
        _ if has_root_certs => Verify::Chain,
        _ => Verify::Nothing,
    };
    match mode {
        None | Some(SslMode::Allow | SslMode::Prefer) if !hosts.contains(&HostKind::Remote) => {
            TlsPlan::Prefer(verify)
        }
        _ => TlsPlan::Require(verify),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_are_taken_out_of_the_url() {
        let split = split_tls_params(
            "postgres://u:p@h/db?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            split,
            UrlTls {
                url: "postgres://u:p@h/db?connect_timeout=3".into(),
                mode: Some(SslMode::VerifyFull),
                root_certs: Some(RootCerts::File("/etc/ca.pem".into())),
            }
        );
        let split =
            split_tls_params("postgres://h/db?sslrootcert=system&sslmode=verify-ca").unwrap();
        assert_eq!(split.url, "postgres://h/db");
        assert_eq!(split.mode, Some(SslMode::VerifyCa));
        assert_eq!(split.root_certs, Some(RootCerts::System));
        let split = split_tls_params("postgres://h/db").unwrap();
        assert_eq!((split.mode, split.root_certs), (None, None));
        let err = split_tls_params("postgres://u:s3cret@h/db?sslmode=sometimes").unwrap_err();
        assert!(err.contains("sslmode=sometimes: not one of"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(split_tls_params("postgres://h/db?sslrootcert=").is_err());
    }

    #[test]
    fn host_kinds() {
        use HostKind::*;
        assert_eq!(tcp_host_kind(Some("localhost"), None), Loopback);
        assert_eq!(tcp_host_kind(Some("LOCALHOST."), None), Loopback);
        assert_eq!(tcp_host_kind(Some("127.0.0.1"), None), Loopback);
        assert_eq!(tcp_host_kind(Some("127.1.2.3"), None), Loopback);
        assert_eq!(tcp_host_kind(Some("::1"), None), Loopback);
        assert_eq!(tcp_host_kind(Some("[::1]"), None), Loopback);
        assert_eq!(tcp_host_kind(Some("db.example"), None), Remote);
        assert_eq!(tcp_host_kind(Some("10.0.0.5"), None), Remote);
        // hostaddr is where the connection goes.
        assert_eq!(
            tcp_host_kind(Some("db.example"), Some("127.0.0.1".parse().unwrap())),
            Loopback
        );
        assert_eq!(
            tcp_host_kind(Some("localhost"), Some("192.0.2.1".parse().unwrap())),
            Remote
        );
    }

    #[test]
    fn tls_plans() {
        use HostKind::*;
        use SslMode::*;
        use TlsPlan::Off;
        use Verify::*;
        let (prefer, require) = (TlsPlan::Prefer, TlsPlan::Require);
        // Unix sockets: never TLS.
        assert_eq!(tls_plan(None, false, &[Socket]), Off);
        assert_eq!(tls_plan(Some(VerifyFull), true, &[Socket]), Off);
        // disable: clear everywhere.
        assert_eq!(tls_plan(Some(Disable), true, &[Remote]), Off);
        // The default and prefer: opportunistic on loopback, required elsewhere.
        assert_eq!(tls_plan(None, false, &[Loopback]), prefer(Nothing));
        assert_eq!(tls_plan(Some(Prefer), false, &[Loopback]), prefer(Nothing));
        assert_eq!(tls_plan(Some(Allow), false, &[Loopback]), prefer(Nothing));
        assert_eq!(tls_plan(None, false, &[Remote]), require(Nothing));
        assert_eq!(
            tls_plan(Some(Prefer), false, &[Loopback, Remote]),
            require(Nothing)
        );
        assert_eq!(tls_plan(Some(Allow), false, &[Remote]), require(Nothing));
        // require: no check, unless a root file is given.
        assert_eq!(
            tls_plan(Some(Require), false, &[Loopback]),
            require(Nothing)
        );
        assert_eq!(tls_plan(Some(Require), true, &[Remote]), require(Chain));
        assert_eq!(tls_plan(None, true, &[Loopback]), prefer(Chain));
        // verify-*.
        assert_eq!(tls_plan(Some(VerifyCa), false, &[Loopback]), require(Chain));
        assert_eq!(
            tls_plan(Some(VerifyFull), false, &[Remote]),
            require(ChainAndName)
        );
        assert_eq!(
            tls_plan(Some(VerifyFull), true, &[Socket, Remote]),
            require(ChainAndName)
        );
    }

    #[test]
    fn locations() {
        assert_eq!(
            StoreLocation::parse("esprit-iam.db"),
            StoreLocation::Sqlite("esprit-iam.db".into())
        );
        assert_eq!(
            StoreLocation::parse("/var/lib/x.db"),
            StoreLocation::Sqlite("/var/lib/x.db".into())
        );
        for url in [
            "postgres://h/db",
            "postgresql://u@h:5432/db",
            "POSTGRES://h/db",
        ] {
            assert_eq!(
                StoreLocation::parse(url),
                StoreLocation::Postgres(url.into())
            );
        }
    }

    #[test]
    fn passwords_are_left_out() {
        for (url, shown) in [
            (
                "postgres://esprit:s3cret@db.example:5432/iam",
                "postgres://esprit:***@db.example:5432/iam",
            ),
            (
                "postgresql://esprit@db/iam?password=s3cret&sslmode=require",
                "postgresql://esprit@db/iam?password=***&sslmode=require",
            ),
            ("postgres://db/iam", "postgres://db/iam"),
            (
                "postgresql://postgres@/postgres?host=/run/pg",
                "postgresql://postgres@/postgres?host=/run/pg",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            assert_eq!(StoreLocation::parse(url).to_string(), shown);
        }
    }
}
