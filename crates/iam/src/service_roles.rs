//! Roles on services: `roles/servicemanagement.serviceController` on `services/SERVICE` (SERVICE
//! is a service config's `name`, e.g. `bookstore.endpoints.my-project.cloud.goog`) lets a
//! service account ask the key server to check API keys for that service, as Google's Service
//! Control asks of ESP's service account.
//!
//! Pure: the role and resource names, the parsing of `roles grant|revoke|list` arguments into
//! an account binding ([`crate::roles`]) or a service binding, and the decision
//! ([`authorize_check`]). The bindings are in the store ([`crate::Store::grant_service_role`]).

use std::fmt;
use std::str::FromStr;

use crate::roles::{MEMBER_PREFIX, Role, member_name, parse_resource};
use crate::{IamError, Result};

/// The prefix of a service resource name.
pub const SERVICE_RESOURCE_PREFIX: &str = "services/";

/// The longest service name accepted, bytes (a DNS name's bound).
pub const MAX_SERVICE_NAME_BYTES: usize = 253;

/// A role on a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceRole {
    /// `roles/servicemanagement.serviceController`: may check API keys for the service (the
    /// key server's `POST /v1/services/{service}:check`).
    ServiceController,
}

impl ServiceRole {
    /// Every service role, in the order lists show them.
    pub const ALL: [ServiceRole; 1] = [ServiceRole::ServiceController];

    /// Google's name, `roles/servicemanagement.…`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceRole::ServiceController => "roles/servicemanagement.serviceController",
        }
    }
}

impl fmt::Display for ServiceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServiceRole {
    type Err = IamError;

    /// Google's exact name, as gcloud takes it.
    fn from_str(s: &str) -> Result<ServiceRole> {
        ServiceRole::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| IamError::UnknownRole(s.to_owned()))
    }
}

/// Why `name` is not a service name (ASCII letters, digits, `-` and `_` in non-empty labels
/// separated by dots, at most [`MAX_SERVICE_NAME_BYTES`]), if it is not.
pub fn service_name_rule_broken(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the service name is empty");
    }
    if name.len() > MAX_SERVICE_NAME_BYTES {
        return Some("the service name is longer than 253 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Some("the service name may hold only letters, digits, '.', '-' and '_'");
    }
    if name.split('.').any(str::is_empty) {
        return Some("the service name has an empty label (leading, trailing or double '.')");
    }
    None
}

/// The service of a resource `services/SERVICE`.
pub fn parse_service_resource(resource: &str) -> Result<String> {
    let invalid = |reason: &str| IamError::InvalidResource {
        resource: resource.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(service) = resource.strip_prefix(SERVICE_RESOURCE_PREFIX) else {
        return Err(invalid("expected services/SERVICE"));
    };
    match service_name_rule_broken(service) {
        None => Ok(service.to_owned()),
        Some(reason) => Err(invalid(&format!(
            "expected services/SERVICE (the service config's name); {reason}"
        ))),
    }
}

/// `services/SERVICE`.
pub fn service_resource_name(service: &str) -> String {
    format!("{SERVICE_RESOURCE_PREFIX}{service}")
}

/// One binding: `member` (an account email) holds `role` on the service `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoleBinding {
    /// The member's account email.
    pub member: String,
    /// The role.
    pub role: ServiceRole,
    /// The service name (without `services/`).
    pub service: String,
    /// When it was granted, seconds since the Unix epoch.
    pub created: u64,
}

impl ServiceRoleBinding {
    /// `serviceAccount:EMAIL`.
    pub fn member_name(&self) -> String {
        member_name(&self.member)
    }

    /// `services/SERVICE`.
    pub fn resource_name(&self) -> String {
        service_resource_name(&self.service)
    }
}

/// Which service bindings [`crate::Store::service_role_bindings`] lists; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceBindingFilter {
    /// Only this member's bindings (account email).
    pub member: Option<String>,
    /// Only this role.
    pub role: Option<ServiceRole>,
    /// Only bindings on this service.
    pub service: Option<String>,
}

/// A role of either kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyRole {
    /// A role on service accounts.
    Account(Role),
    /// A role on services.
    Service(ServiceRole),
}

/// Parses Google's exact role name, of either kind.
pub fn parse_any_role(role: &str) -> Result<AnyRole> {
    if let Ok(role) = role.parse::<Role>() {
        return Ok(AnyRole::Account(role));
    }
    role.parse::<ServiceRole>().map(AnyRole::Service)
}

/// A resource of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyResource {
    /// A service account (its email).
    Account(String),
    /// A service (its name).
    Service(String),
}

/// `services/SERVICE`, or an account resource as [`parse_resource`] takes it.
pub fn parse_any_resource(resource: &str) -> Result<AnyResource> {
    if resource.starts_with(SERVICE_RESOURCE_PREFIX) {
        parse_service_resource(resource).map(AnyResource::Service)
    } else {
        parse_resource(resource).map(AnyResource::Account)
    }
}

/// What `roles grant|revoke --role R --resource X` is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingTarget {
    /// A role on a service account.
    Account {
        /// The role.
        role: Role,
        /// The resource account's email.
        resource: String,
    },
    /// A role on a service.
    Service {
        /// The role.
        role: ServiceRole,
        /// The service name.
        service: String,
    },
}

/// The role and resource of a grant or revoke, checked: a known role, a well-formed resource,
/// and a role that applies to that kind of resource.
pub fn parse_binding_target(role: &str, resource: &str) -> Result<BindingTarget> {
    let role = parse_any_role(role)?;
    let on_service = resource.starts_with(SERVICE_RESOURCE_PREFIX);
    match (role, on_service) {
        (AnyRole::Account(role), false) => Ok(BindingTarget::Account {
            role,
            resource: parse_resource(resource)?,
        }),
        (AnyRole::Service(role), true) => Ok(BindingTarget::Service {
            role,
            service: parse_service_resource(resource)?,
        }),
        (AnyRole::Account(role), true) => Err(IamError::RoleNotOnResource {
            role: role.name().to_owned(),
            resource: resource.to_owned(),
            expected: "projects/-/serviceAccounts/EMAIL",
        }),
        (AnyRole::Service(role), false) => Err(IamError::RoleNotOnResource {
            role: role.name().to_owned(),
            resource: resource.to_owned(),
            expected: "services/SERVICE",
        }),
    }
}

/// A refused check: `member` does not hold `roles/servicemanagement.serviceController` on
/// `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDenied {
    /// The caller's account email.
    pub member: String,
    /// The service the check was for.
    pub service: String,
}

impl CheckDenied {
    /// The 403 message the caller sees (a contract).
    pub fn message(&self) -> String {
        format!(
            "Permission denied: {MEMBER_PREFIX}{} does not hold {} on {}",
            self.member,
            ServiceRole::ServiceController.name(),
            service_resource_name(&self.service)
        )
    }
}

/// May `caller` (an authenticated account email) check API keys for `service`, given
/// `bindings`? Only an exact binding of the Service Controller role on that service counts:
/// no wildcard, no role on another service, no account role.
pub fn authorize_check(
    caller: &str,
    service: &str,
    bindings: &[ServiceRoleBinding],
) -> std::result::Result<(), CheckDenied> {
    let holds = bindings.iter().any(|b| {
        b.role == ServiceRole::ServiceController && b.member == caller && b.service == service
    });
    if holds {
        Ok(())
    } else {
        Err(CheckDenied {
            member: caller.to_owned(),
            service: service.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "proxy-one@proj-one.iam.gserviceaccount.com";
    const B: &str = "other-two@proj-one.iam.gserviceaccount.com";
    const SVC: &str = "bookstore.endpoints.proj-one.cloud.goog";

    fn b(member: &str, service: &str) -> ServiceRoleBinding {
        ServiceRoleBinding {
            member: member.into(),
            role: ServiceRole::ServiceController,
            service: service.into(),
            created: 0,
        }
    }

    #[test]
    fn check_authorization_table() {
        let denied = |m: &str, s: &str| {
            Err(CheckDenied {
                member: m.into(),
                service: s.into(),
            })
        };
        let table: Vec<(
            &str,
            Vec<ServiceRoleBinding>,
            std::result::Result<(), CheckDenied>,
        )> = vec![
            ("exact binding", vec![b(A, SVC)], Ok(())),
            ("no bindings", vec![], denied(A, SVC)),
            (
                "another service",
                vec![b(A, "other.example.com")],
                denied(A, SVC),
            ),
            ("another member", vec![b(B, SVC)], denied(A, SVC)),
            (
                "a prefix of the service is not the service",
                vec![b(A, "bookstore.endpoints.proj-one.cloud")],
                denied(A, SVC),
            ),
            (
                "among others",
                vec![b(B, SVC), b(A, "x.example.com"), b(A, SVC)],
                Ok(()),
            ),
        ];
        for (name, bindings, want) in table {
            assert_eq!(authorize_check(A, SVC, &bindings), want, "{name}");
        }
        assert_eq!(
            denied(A, SVC).unwrap_err().message(),
            format!(
                "Permission denied: serviceAccount:{A} does not hold \
                 roles/servicemanagement.serviceController on services/{SVC}"
            )
        );
    }

    #[test]
    fn binding_targets() {
        let controller = "roles/servicemanagement.serviceController";
        let creator = "roles/iam.serviceAccountTokenCreator";
        assert_eq!(
            parse_binding_target(controller, &format!("services/{SVC}")).unwrap(),
            BindingTarget::Service {
                role: ServiceRole::ServiceController,
                service: SVC.into()
            }
        );
        assert_eq!(
            parse_binding_target(creator, &format!("projects/-/serviceAccounts/{A}")).unwrap(),
            BindingTarget::Account {
                role: Role::ServiceAccountTokenCreator,
                resource: A.into()
            }
        );
        let errors: &[(&str, &str, &str)] = &[
            (
                controller,
                A,
                "roles/servicemanagement.serviceController is granted on services/SERVICE, not on",
            ),
            (
                creator,
                "services/x.example.com",
                "roles/iam.serviceAccountTokenCreator is granted on projects/-/serviceAccounts/EMAIL",
            ),
            ("roles/owner", "services/x", "unknown role \"roles/owner\""),
            (
                "roles/servicemanagement.servicecontroller",
                "services/x",
                "roles/servicemanagement.serviceController (on services/SERVICE)",
            ),
            (controller, "services/", "the service name is empty"),
            (controller, "services/a..b", "empty label"),
            (controller, "services/.a", "empty label"),
            (controller, "services/a/b", "only letters, digits"),
            (controller, "services/a b", "only letters, digits"),
            (controller, "services/a\nb", "only letters, digits"),
        ];
        for (role, resource, want) in errors {
            let err = parse_binding_target(role, resource)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{role} {resource:?}: {err}");
        }
        let long = format!("services/{}", "a".repeat(MAX_SERVICE_NAME_BYTES + 1));
        let err = parse_binding_target(controller, &long)
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than 253"), "{err}");
        let limit = format!("services/{}", "a".repeat(MAX_SERVICE_NAME_BYTES));
        parse_binding_target(controller, &limit).unwrap();
    }

    #[test]
    fn roles_and_resources_of_either_kind() {
        assert_eq!(
            parse_any_role("roles/servicemanagement.serviceController").unwrap(),
            AnyRole::Service(ServiceRole::ServiceController)
        );
        assert_eq!(
            parse_any_role("roles/iam.serviceAccountUser").unwrap(),
            AnyRole::Account(Role::ServiceAccountUser)
        );
        assert!(matches!(
            parse_any_role("roles/viewer"),
            Err(IamError::UnknownRole(_))
        ));
        assert_eq!(
            parse_any_resource(&format!("services/{SVC}")).unwrap(),
            AnyResource::Service(SVC.into())
        );
        assert_eq!(
            parse_any_resource(A).unwrap(),
            AnyResource::Account(A.into())
        );
        assert_eq!(service_resource_name(SVC), format!("services/{SVC}"));
    }
}
