//! `esprit iam roles …`: grant, revoke and list role bindings on accounts and services.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use iam::service_roles::{
    AnyResource, AnyRole, BindingTarget, ServiceBindingFilter, parse_any_resource, parse_any_role,
    parse_binding_target, service_resource_name,
};
use iam::{BindingFilter, Grant, StoreLocation};
use serde_json::json;

use super::{now, open, print_list, rfc3339};

/// `--member`, `--role`, `--resource` of `roles grant` and `roles revoke`.
#[derive(Args)]
pub(super) struct BindingArgs {
    /// Who gets the role: serviceAccount:EMAIL.
    #[arg(long, value_name = "MEMBER")]
    member: String,
    /// roles/iam.serviceAccountTokenCreator (may obtain the resource account's ID tokens,
    /// access tokens and signed JWTs) or roles/iam.serviceAccountUser (recorded; gates nothing
    /// in esprit), on an account; roles/servicemanagement.serviceController (may ask the key
    /// server to check API keys for the service), on a service.
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// What the role is on: an account, projects/-/serviceAccounts/EMAIL (or EMAIL), or a
    /// service, services/SERVICE (the service config's name).
    #[arg(long, value_name = "RESOURCE")]
    resource: String,
}

#[derive(Subcommand)]
pub(super) enum RolesCommand {
    /// Grant ROLE on RESOURCE to MEMBER (granting an existing binding succeeds and changes
    /// nothing).
    Grant(BindingArgs),
    /// Revoke ROLE on RESOURCE from MEMBER (an error when the binding does not exist).
    Revoke(BindingArgs),
    /// List role bindings, all or those matching the filters.
    List {
        /// Only this member's bindings (serviceAccount:EMAIL).
        #[arg(long, value_name = "MEMBER")]
        member: Option<String>,
        /// Only this role.
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// Only bindings on this account (projects/-/serviceAccounts/EMAIL or EMAIL) or service
        /// (services/SERVICE).
        #[arg(long, value_name = "RESOURCE")]
        resource: Option<String>,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The member and the role and resource of `args`, checked (account email, a known role on
/// the kind of resource it applies to).
fn binding(args: &BindingArgs) -> anyhow::Result<(String, BindingTarget)> {
    Ok((
        iam::roles::parse_member(&args.member)?,
        parse_binding_target(&args.role, &args.resource)?,
    ))
}

pub(super) fn roles(path: &StoreLocation, command: RolesCommand) -> anyhow::Result<ExitCode> {
    // Arguments are checked before the store is opened (or created).
    match command {
        RolesCommand::Grant(args) => {
            let (member, target) = binding(&args)?;
            let mut store = open(path)?;
            let m = iam::roles::member_name(&member);
            let (grant, role, r) = match target {
                BindingTarget::Account { role, resource } => (
                    store.grant_role(&member, role, &resource, now()?)?,
                    role.name(),
                    iam::roles::resource_name(&resource),
                ),
                BindingTarget::Service { role, service } => (
                    store.grant_service_role(&member, role, &service, now()?)?,
                    role.name(),
                    service_resource_name(&service),
                ),
            };
            match grant {
                Grant::Granted => eprintln!("granted {role} on {r} to {m}"),
                Grant::AlreadyGranted => eprintln!("{m} already holds {role} on {r}"),
            }
        }
        RolesCommand::Revoke(args) => {
            let (member, target) = binding(&args)?;
            let mut store = open(path)?;
            let (role, r) = match target {
                BindingTarget::Account { role, resource } => {
                    store.revoke_role(&member, role, &resource)?;
                    (role.name(), iam::roles::resource_name(&resource))
                }
                BindingTarget::Service { role, service } => {
                    store.revoke_service_role(&member, role, &service)?;
                    (role.name(), service_resource_name(&service))
                }
            };
            eprintln!(
                "revoked {role} on {r} from {}",
                iam::roles::member_name(&member)
            );
        }
        RolesCommand::List {
            member,
            role,
            resource,
            json,
        } => {
            let member = member
                .as_deref()
                .map(iam::roles::parse_member)
                .transpose()?;
            let role = role.as_deref().map(parse_any_role).transpose()?;
            let resource = resource.as_deref().map(parse_any_resource).transpose()?;
            // Each kind of binding is listed unless a filter names the other kind.
            let account_filter = match (role, &resource) {
                (Some(AnyRole::Service(_)), _) | (_, Some(AnyResource::Service(_))) => None,
                (role, resource) => Some(BindingFilter {
                    member: member.clone(),
                    role: match role {
                        Some(AnyRole::Account(role)) => Some(role),
                        _ => None,
                    },
                    resource: match resource {
                        Some(AnyResource::Account(email)) => Some(email.clone()),
                        _ => None,
                    },
                }),
            };
            let service_filter = match (role, &resource) {
                (Some(AnyRole::Account(_)), _) | (_, Some(AnyResource::Account(_))) => None,
                (role, resource) => Some(ServiceBindingFilter {
                    member: member.clone(),
                    role: match role {
                        Some(AnyRole::Service(role)) => Some(role),
                        _ => None,
                    },
                    service: match resource {
                        Some(AnyResource::Service(service)) => Some(service.clone()),
                        _ => None,
                    },
                }),
            };
            let store = open(path)?;
            // (resource, role, member, created) of both kinds: account bindings first.
            let mut rows: Vec<(String, &'static str, String, u64)> = Vec::new();
            if let Some(filter) = account_filter {
                rows.extend(
                    store
                        .role_bindings(&filter)?
                        .iter()
                        .map(|b| (b.resource_name(), b.role.name(), b.member_name(), b.created)),
                );
            }
            if let Some(filter) = service_filter {
                rows.extend(
                    store
                        .service_role_bindings(&filter)?
                        .iter()
                        .map(|b| (b.resource_name(), b.role.name(), b.member_name(), b.created)),
                );
            }
            print_list(
                &rows,
                json,
                |(resource, role, member, created)| {
                    json!({
                        "member": member, "role": role,
                        "resource": resource, "created": rfc3339(*created),
                    })
                },
                &["RESOURCE", "ROLE", "MEMBER", "CREATED"],
                |(resource, role, member, created)| {
                    vec![
                        resource.clone(),
                        (*role).to_owned(),
                        member.clone(),
                        rfc3339(*created),
                    ]
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
