//! Where the store is (`--store` / `$ESPRIT_IAM_STORE`): a SQLite path or a PostgreSQL URL,
//! shown with its password left out.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
