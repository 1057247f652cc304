//! Roles on service accounts: Google's IAM policy bindings, reduced to what esprit needs, and
//! the authorization decision of the IAM Credentials API.
//!
//! A binding grants one role to one member on one resource. esprit knows two roles, both on
//! service accounts, and one kind of member:
//! - members: `serviceAccount:EMAIL` (an account of the store);
//! - resources: `projects/-/serviceAccounts/EMAIL` (Google's spelling; a bare `EMAIL` is
//!   accepted too and means the same);
//! - roles: [`Role::ServiceAccountTokenCreator`] (lets the member obtain ID tokens, access
//!   tokens and signed JWTs of the resource account through the IAM Credentials API) and
//!   [`Role::ServiceAccountUser`] (recorded and listed, but it gates nothing in esprit: Google
//!   uses it to attach an account to resources such as VMs, which esprit does not have).
//!
//! [`authorize`] is the pure decision of whether a caller may obtain credentials of a target,
//! possibly through a chain of delegates.

use std::fmt;
use std::str::FromStr;

use crate::ids::{EMAIL_DOMAIN, validate_account_id, validate_project_id};
use crate::{IamError, Result};

/// The prefix of a service-account member.
pub const MEMBER_PREFIX: &str = "serviceAccount:";

/// The prefix of a service-account resource name (`-`: the project is taken from the email).
pub const RESOURCE_PREFIX: &str = "projects/-/serviceAccounts/";

/// A role esprit knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `roles/iam.serviceAccountTokenCreator`: obtain the account's credentials
    /// (generateIdToken, generateAccessToken, signJwt).
    ServiceAccountTokenCreator,
    /// `roles/iam.serviceAccountUser`: recorded only; nothing in esprit checks it.
    ServiceAccountUser,
}

impl Role {
    /// Every role, in the order lists show them.
    pub const ALL: [Role; 2] = [Role::ServiceAccountTokenCreator, Role::ServiceAccountUser];

    /// Google's name, `roles/iam.…`.
    pub fn name(self) -> &'static str {
        match self {
            Role::ServiceAccountTokenCreator => "roles/iam.serviceAccountTokenCreator",
            Role::ServiceAccountUser => "roles/iam.serviceAccountUser",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = IamError;

    /// Google's exact name (`roles/iam.serviceAccountTokenCreator`), as gcloud takes it.
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| IamError::UnknownRole(s.to_owned()))
    }
}

/// Why `email` is not a service-account email of the store's shape
/// (`ACCOUNT@PROJECT.iam.gserviceaccount.com` with Google's id rules), if it is not.
fn email_rule_broken(email: &str) -> Option<String> {
    let Some((account, domain)) = email.split_once('@') else {
        return Some("has no @".to_owned());
    };
    let Some(project) = domain
        .strip_suffix(EMAIL_DOMAIN)
        .and_then(|p| p.strip_suffix('.'))
    else {
        return Some(format!("is not in the domain PROJECT.{EMAIL_DOMAIN}"));
    };
    if let Err(err) = validate_account_id(account) {
        return Some(err.to_string());
    }
    if let Err(err) = validate_project_id(project) {
        return Some(err.to_string());
    }
    None
}

/// The account email of a member `serviceAccount:EMAIL`.
pub fn parse_member(member: &str) -> Result<String> {
    let invalid = |reason: String| IamError::InvalidMember {
        member: member.to_owned(),
        reason,
    };
    let Some(email) = member.strip_prefix(MEMBER_PREFIX) else {
        let reason = match member.split_once(':') {
            Some((kind, _)) => format!(
                "members of kind {kind:?} are not supported; esprit knows only \
                 serviceAccount:EMAIL"
            ),
            None => "expected serviceAccount:EMAIL".to_owned(),
        };
        return Err(invalid(reason));
    };
    match email_rule_broken(email) {
        None => Ok(email.to_owned()),
        Some(reason) => Err(invalid(format!("the email {reason}"))),
    }
}

/// The account email of a resource `projects/-/serviceAccounts/EMAIL` or `EMAIL`.
pub fn parse_resource(resource: &str) -> Result<String> {
    let invalid = |reason: String| IamError::InvalidResource {
        resource: resource.to_owned(),
        reason,
    };
    let email = if let Some(email) = resource.strip_prefix(RESOURCE_PREFIX) {
        email
    } else if resource.starts_with("projects/") {
        return Err(invalid(format!(
            "expected {RESOURCE_PREFIX}EMAIL (the project is always `-`, as in Google's IAM \
             Credentials API)"
        )));
    } else {
        resource
    };
    match email_rule_broken(email) {
        None => Ok(email.to_owned()),
        Some(reason) => Err(invalid(format!(
            "expected {RESOURCE_PREFIX}EMAIL or EMAIL; the email {reason}"
        ))),
    }
}

/// `serviceAccount:EMAIL`.
pub fn member_name(email: &str) -> String {
    format!("{MEMBER_PREFIX}{email}")
}

/// `projects/-/serviceAccounts/EMAIL`.
pub fn resource_name(email: &str) -> String {
    format!("{RESOURCE_PREFIX}{email}")
}

/// One binding: `member` holds `role` on `resource`. Both are account emails (the store's one
/// canonical form; [`RoleBinding::member_name`] and [`RoleBinding::resource_name`] spell them
/// as Google does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleBinding {
    /// The member's account email.
    pub member: String,
    /// The role.
    pub role: Role,
    /// The resource account's email.
    pub resource: String,
    /// When it was granted, seconds since the Unix epoch.
    pub created: u64,
}

impl RoleBinding {
    /// `serviceAccount:EMAIL`.
    pub fn member_name(&self) -> String {
        member_name(&self.member)
    }

    /// `projects/-/serviceAccounts/EMAIL`.
    pub fn resource_name(&self) -> String {
        resource_name(&self.resource)
    }
}

/// What [`crate::Store::grant_role`] did. Granting is idempotent, as gcloud's
/// `add-iam-policy-binding` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The binding is new.
    Granted,
    /// The binding existed already (its first grant time is kept).
    AlreadyGranted,
}

/// Which bindings [`crate::Store::role_bindings`] lists; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindingFilter {
    /// Only this member's bindings (account email).
    pub member: Option<String>,
    /// Only this role.
    pub role: Option<Role>,
    /// Only bindings on this resource (account email).
    pub resource: Option<String>,
}

/// A refused credentials request: `member` lacks the Token Creator role on `resource`, the
/// first missing link of the chain caller → delegates… → target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Who needed the role (the caller or a delegate).
    pub member: String,
    /// The account it was needed on (a delegate or the target).
    pub resource: String,
}

/// May `caller` obtain credentials of `target` through `delegates`, given `bindings`?
///
/// Google's rule: the caller needs `roles/iam.serviceAccountTokenCreator` on the first
/// delegate (on the target when there are none), each delegate on the next, the last delegate
/// on the target. There is no implicit permission: a caller asking for its own credentials
/// needs the role on itself. Other roles grant nothing here. No I/O: `bindings` must hold at
/// least the bindings on every account of the chain.
pub fn authorize(
    caller: &str,
    target: &str,
    delegates: &[String],
    bindings: &[RoleBinding],
) -> std::result::Result<(), Denied> {
    let chain = std::iter::once(caller)
        .chain(delegates.iter().map(String::as_str))
        .chain(std::iter::once(target));
    let mut previous: Option<&str> = None;
    for account in chain {
        if let Some(member) = previous {
            let holds = bindings.iter().any(|b| {
                b.role == Role::ServiceAccountTokenCreator
                    && b.member == member
                    && b.resource == account
            });
            if !holds {
                return Err(Denied {
                    member: member.to_owned(),
                    resource: account.to_owned(),
                });
            }
        }
        previous = Some(account);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "alpha-1@proj-one.iam.gserviceaccount.com";
    const B: &str = "bravo-2@proj-one.iam.gserviceaccount.com";
    const C: &str = "charlie-3@proj-two.iam.gserviceaccount.com";
    const D: &str = "delta-4@proj-two.iam.gserviceaccount.com";

    fn b(member: &str, role: Role, resource: &str) -> RoleBinding {
        RoleBinding {
            member: member.into(),
            role,
            resource: resource.into(),
            created: 0,
        }
    }

    fn tc(member: &str, resource: &str) -> RoleBinding {
        b(member, Role::ServiceAccountTokenCreator, resource)
    }

    #[test]
    fn authorization_table() {
        let denied = |m: &str, r: &str| {
            Err(Denied {
                member: m.into(),
                resource: r.into(),
            })
        };
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            &str,
            &str,
            &str,
            Vec<&str>,
            Vec<RoleBinding>,
            Result<(), Denied>,
        )> = vec![
            ("direct grant", A, B, vec![], vec![tc(A, B)], Ok(())),
            ("no bindings", A, B, vec![], vec![], denied(A, B)),
            (
                "reverse grant does not count",
                A,
                B,
                vec![],
                vec![tc(B, A)],
                denied(A, B),
            ),
            (
                "role on another account",
                A,
                B,
                vec![],
                vec![tc(A, C)],
                denied(A, B),
            ),
            (
                "another member's role",
                A,
                B,
                vec![],
                vec![tc(C, B)],
                denied(A, B),
            ),
            (
                "serviceAccountUser grants nothing",
                A,
                B,
                vec![],
                vec![b(A, Role::ServiceAccountUser, B)],
                denied(A, B),
            ),
            ("self without role", A, A, vec![], vec![], denied(A, A)),
            (
                "self with role on self",
                A,
                A,
                vec![],
                vec![tc(A, A)],
                Ok(()),
            ),
            (
                "self: a role on another account is not enough",
                A,
                A,
                vec![],
                vec![tc(A, B)],
                denied(A, A),
            ),
            (
                "one delegate, full chain",
                A,
                C,
                vec![B],
                vec![tc(A, B), tc(B, C)],
                Ok(()),
            ),
            (
                "one delegate: caller's direct grant on the target does not replace the chain",
                A,
                C,
                vec![B],
                vec![tc(A, C), tc(B, C)],
                denied(A, B),
            ),
            (
                "one delegate, last link missing",
                A,
                C,
                vec![B],
                vec![tc(A, B), tc(A, C)],
                denied(B, C),
            ),
            (
                "two delegates, full chain",
                A,
                D,
                vec![B, C],
                vec![tc(A, B), tc(B, C), tc(C, D)],
                Ok(()),
            ),
            (
                "two delegates, middle link missing",
                A,
                D,
                vec![B, C],
                vec![tc(A, B), tc(C, D), tc(A, C), tc(B, D)],
                denied(B, C),
            ),
            (
                "two delegates in the wrong order",
                A,
                D,
                vec![C, B],
                vec![tc(A, B), tc(B, C), tc(C, D)],
                denied(A, C),
            ),
            (
                "delegate is the caller itself: needs the role on itself",
                A,
                B,
                vec![A],
                vec![tc(A, B)],
                denied(A, A),
            ),
        ];
        for (name, caller, target, delegates, bindings, want) in table {
            let delegates: Vec<String> = delegates.into_iter().map(String::from).collect();
            assert_eq!(
                authorize(caller, target, &delegates, &bindings),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn roles_parse_by_googles_exact_name() {
        assert_eq!(
            "roles/iam.serviceAccountTokenCreator"
                .parse::<Role>()
                .unwrap(),
            Role::ServiceAccountTokenCreator
        );
        assert_eq!(
            "roles/iam.serviceAccountUser".parse::<Role>().unwrap(),
            Role::ServiceAccountUser
        );
        for bad in [
            "",
            "serviceAccountTokenCreator",
            "roles/iam.serviceaccounttokencreator",
            "roles/owner",
            "roles/iam.serviceAccountTokenCreator ",
        ] {
            let err = bad.parse::<Role>().unwrap_err();
            assert!(matches!(err, IamError::UnknownRole(_)), "{bad:?}");
            assert!(
                err.to_string()
                    .contains("roles/iam.serviceAccountTokenCreator"),
                "{err}"
            );
        }
    }

    #[test]
    fn members_and_resources() {
        assert_eq!(parse_member(&format!("serviceAccount:{A}")).unwrap(), A);
        assert_eq!(
            parse_resource(&format!("projects/-/serviceAccounts/{A}")).unwrap(),
            A
        );
        assert_eq!(parse_resource(A).unwrap(), A);
        assert_eq!(member_name(A), format!("serviceAccount:{A}"));
        assert_eq!(resource_name(A), format!("projects/-/serviceAccounts/{A}"));

        let members: &[(&str, &str)] = &[
            (A, "expected serviceAccount:EMAIL"),
            ("user:someone@example.com", "members of kind \"user\""),
            ("serviceAccount:someone@example.com", "is not in the domain"),
            ("serviceAccount:no-at-sign", "has no @"),
            (
                "serviceAccount:Alpha-1@proj-one.iam.gserviceaccount.com",
                "invalid service account id",
            ),
            (
                "serviceAccount:alpha-1@p.iam.gserviceaccount.com",
                "invalid project id",
            ),
            ("serviceAccount:", "has no @"),
        ];
        for (text, want) in members {
            let err = parse_member(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("invalid member"), "{text:?}: {err}");
        }
        let resources: &[(&str, &str)] = &[
            (
                "projects/proj-one/serviceAccounts/alpha-1@proj-one.iam.gserviceaccount.com",
                "the project is always `-`",
            ),
            ("projects/-/serviceAccounts/", "has no @"),
            ("serviceAccount:x@y", "is not in the domain"),
            ("someone@example.com", "is not in the domain"),
            ("", "has no @"),
        ];
        for (text, want) in resources {
            let err = parse_resource(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with("invalid resource"), "{text:?}: {err}");
        }
    }
}
