//! The esprit extension `x_esprit_allowed_callers`: the accounts (by email) a requirement
//! accepts, and which claim of a provider's tokens names the calling account.
//!
//! ESP has no such field: a provider whose issuer signs for many accounts (a token service,
//! `https://accounts.google.com`) lets every account it signs for call. The parsing and the
//! comparison live here so that the config check and the request-time decision (authn) use
//! one definition of "the same account".

use std::fmt;

/// An account email a requirement accepts, normalized: the local part as written, the domain
/// in ASCII lowercase (RFC 5321: the domain is case-insensitive, the local part may not be).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caller(String);

impl Caller {
    /// Parses a plausible account email: `local@domain`, ASCII only, one `@`, a local part of
    /// printable characters without spaces, quotes, `<`, `>`, `,`, `;`, `(`, `)`, `\`; a domain
    /// of at least two dot-separated labels of letters, digits and `-`. `None` otherwise.
    /// Used for config entries and for token claims alike, so both normalize the same way.
    pub fn parse(text: &str) -> Option<Caller> {
        let (local, domain) = text.split_once('@')?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"@\"<>,;:()\\[]".contains(&b));
        let labels_ok = domain.len() <= 253
            && domain.split('.').count() >= 2
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        (local_ok && labels_ok).then(|| Caller(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which claim of a provider's tokens names the calling account. Decided by the provider's
/// configured issuer, never by the token, so a token cannot choose how it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerClaim {
    /// The issuer is one account's email (self-signed JWTs, `iss` = the account's
    /// `client_email`): every token the provider accepts was signed by that account's keys, so
    /// the caller is that account. Its `email` claim is ignored: the account writes it itself.
    Issuer(Caller),
    /// The issuer signs for many accounts (a token service, `https://accounts.google.com`): the
    /// caller is the `email` claim, which the issuer vouches for, and only with
    /// `email_verified: true` (a JSON boolean).
    VerifiedEmail,
}

impl CallerClaim {
    /// The claim an issuer's tokens name their caller with: [`CallerClaim::Issuer`] when the
    /// issuer is an account email, else [`CallerClaim::VerifiedEmail`].
    pub fn of_issuer(issuer: &str) -> CallerClaim {
        match Caller::parse(issuer) {
            Some(account) => CallerClaim::Issuer(account),
            None => CallerClaim::VerifiedEmail,
        }
    }
}

/// Which callers a requirement accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedCallers {
    /// No `x_esprit_allowed_callers`: every account whose token the provider validates (ESP).
    Any,
    /// `x_esprit_allowed_callers`: only these accounts (never empty, no duplicates), read from
    /// the token through `claim`.
    Listed {
        claim: CallerClaim,
        callers: Vec<Caller>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_parse_and_normalize_the_domain_only() {
        let cases = [
            (
                "client@proj.iam.gserviceaccount.com",
                Some("client@proj.iam.gserviceaccount.com"),
            ),
            (
                "Client@PROJ.Iam.GServiceAccount.com",
                Some("Client@proj.iam.gserviceaccount.com"),
            ),
            ("a.b+c_d-e@x-y.example", Some("a.b+c_d-e@x-y.example")),
            ("", None),
            ("client", None),
            ("@proj.example.com", None),
            ("client@", None),
            ("client@localhost", None),
            ("client@proj..example.com", None),
            ("client@-proj.example.com", None),
            ("client@proj.example.com.", None),
            ("a@b@proj.example.com", None),
            ("cli ent@proj.example.com", None),
            ("\"client\"@proj.example.com", None),
            ("clïent@proj.example.com", None),
            ("client@proj.exämple.com", None),
            ("client@proj.example.com ", None),
            ("https://accounts.google.com", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                Caller::parse(text).as_ref().map(Caller::as_str),
                want,
                "{text:?}"
            );
        }
        assert!(Caller::parse(&format!("{}@x.example", "a".repeat(65))).is_none());
    }

    #[test]
    fn the_issuer_decides_which_claim_names_the_caller() {
        assert_eq!(
            CallerClaim::of_issuer("client@proj.iam.gserviceaccount.com"),
            CallerClaim::Issuer(Caller("client@proj.iam.gserviceaccount.com".to_owned()))
        );
        for issuer in [
            "https://accounts.google.com",
            "http://127.0.0.1:8081",
            "accounts.google.com",
        ] {
            assert_eq!(
                CallerClaim::of_issuer(issuer),
                CallerClaim::VerifiedEmail,
                "{issuer}"
            );
        }
    }
}
