//! Identifiers: account and project ids (Google's rules), emails, key ids and numeric client ids.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::{IamError, Result};

/// The domain of service-account emails: `NAME@PROJECT.iam.gserviceaccount.com`.
pub const EMAIL_DOMAIN: &str = "iam.gserviceaccount.com";

/// Why an id breaks the shared rules of account and project ids, if it does.
fn id_rule_broken(id: &str) -> Option<&'static str> {
    let len = id.chars().count();
    if !(6..=30).contains(&len) {
        return Some("must be 6 to 30 characters long");
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("may contain only lowercase letters, digits and hyphens");
    }
    if id.ends_with('-') {
        return Some("must not end with a hyphen");
    }
    None
}

/// Checks a service-account id (the part before `@`): 6-30 characters of `[a-z0-9-]`, starting
/// with a letter, not ending with a hyphen (Google's `[a-z]([-a-z0-9]*[a-z0-9])`).
pub fn validate_account_id(id: &str) -> Result<()> {
    match id_rule_broken(id) {
        None => Ok(()),
        Some(reason) => Err(IamError::InvalidAccountId {
            id: id.to_owned(),
            reason,
        }),
    }
}

/// Checks a project id: 6-30 characters of `[a-z0-9-]`, starting with a letter. Google also
/// refuses a trailing hyphen; so does esprit.
pub fn validate_project_id(id: &str) -> Result<()> {
    match id_rule_broken(id) {
        None => Ok(()),
        Some(reason) => Err(IamError::InvalidProjectId {
            id: id.to_owned(),
            reason,
        }),
    }
}

/// `ACCOUNT@PROJECT.iam.gserviceaccount.com`, after checking both ids.
pub fn account_email(account_id: &str, project_id: &str) -> Result<String> {
    validate_account_id(account_id)?;
    validate_project_id(project_id)?;
    Ok(format!("{account_id}@{project_id}.{EMAIL_DOMAIN}"))
}

// Characters kept as they are in a URL path segment holding an email; `@` becomes `%40` as in
// the `client_x509_cert_url` of Google's key files.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// An email percent-encoded for a URL path segment (`a@b.c` → `a%40b.c`).
pub fn encode_path_segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// A percent-decoded path segment, or `None` when it is not UTF-8 once decoded.
pub fn decode_path_segment(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| IamError::Random)?;
    Ok(bytes)
}

/// A new key id: 40 lowercase hex characters, the shape of Google's `private_key_id`.
pub fn new_key_id() -> Result<String> {
    use std::fmt::Write as _;
    let bytes = random_bytes::<20>()?;
    Ok(bytes.iter().fold(String::with_capacity(40), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// A new numeric account id: 21 decimal digits starting with `1`, the shape of Google's
/// `client_id` (an account's unique id).
pub fn new_client_id() -> Result<String> {
    let bytes = random_bytes::<20>()?;
    let mut id = String::with_capacity(21);
    id.push('1');
    // Modulo bias over 256 values is 6/256 per digit: irrelevant for an identifier.
    id.extend(bytes.iter().map(|b| char::from(b'0' + b % 10)));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_follow_googles_rules() {
        let table: &[(&str, Option<&str>)] = &[
            ("bookstore-client", None),
            ("abcdef", None),
            ("a12345", None),
            ("a-----b", None),
            ("abcdefghijklmnopqrstuvwxyz0123", None), // 30
            ("abcde", Some("must be 6 to 30 characters long")),
            (
                "abcdefghijklmnopqrstuvwxyz01234",
                Some("must be 6 to 30 characters long"),
            ),
            ("", Some("must be 6 to 30 characters long")),
            ("1abcdef", Some("must start with a lowercase letter")),
            ("-abcdef", Some("must start with a lowercase letter")),
            ("Abcdef", Some("must start with a lowercase letter")),
            (
                "abcDef",
                Some("may contain only lowercase letters, digits and hyphens"),
            ),
            (
                "abc_def",
                Some("may contain only lowercase letters, digits and hyphens"),
            ),
            (
                "abc.def",
                Some("may contain only lowercase letters, digits and hyphens"),
            ),
            (
                "abcdéf",
                Some("may contain only lowercase letters, digits and hyphens"),
            ),
            ("abcdef-", Some("must not end with a hyphen")),
        ];
        for (id, want) in table {
            let got = validate_account_id(id);
            match (want, got) {
                (None, Ok(())) => {}
                (
                    Some(reason),
                    Err(IamError::InvalidAccountId {
                        id: got_id,
                        reason: r,
                    }),
                ) => {
                    assert_eq!(&r, reason, "{id:?}");
                    assert_eq!(&got_id, id);
                }
                (want, got) => panic!("{id:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn project_ids_follow_googles_rules() {
        assert!(validate_project_id("my-project-1").is_ok());
        for bad in ["proj", "1project", "my_project", "My-project", "project-"] {
            assert!(
                matches!(
                    validate_project_id(bad),
                    Err(IamError::InvalidProjectId { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_are_account_at_project_domain() {
        assert_eq!(
            account_email("bookstore-client", "my-project").unwrap(),
            "bookstore-client@my-project.iam.gserviceaccount.com"
        );
        assert!(matches!(
            account_email("bookstore-client", "x"),
            Err(IamError::InvalidProjectId { .. })
        ));
        assert!(matches!(
            account_email("x", "my-project"),
            Err(IamError::InvalidAccountId { .. })
        ));
    }

    #[test]
    fn path_segments_round_trip() {
        let email = "a-b_c@my-project.iam.gserviceaccount.com";
        let encoded = encode_path_segment(email);
        assert_eq!(encoded, "a-b_c%40my-project.iam.gserviceaccount.com");
        assert_eq!(decode_path_segment(&encoded).unwrap(), email);
        assert_eq!(decode_path_segment(email).unwrap(), email);
        assert_eq!(decode_path_segment("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_path_segment("%ff"), None);
    }

    #[test]
    fn generated_ids_have_googles_shapes() {
        let a = new_key_id().unwrap();
        let b = new_key_id().unwrap();
        assert_eq!(a.len(), 40);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
        let id = new_client_id().unwrap();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with('1'));
        assert!(id.bytes().all(|c| c.is_ascii_digit()));
    }
}
