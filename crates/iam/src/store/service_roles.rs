//! Role bindings on services (`services/SERVICE`): grant, revoke, list, and the bindings a
//! check's authorization needs. The table's store code is shared with account bindings
//! ([`BindingTable`]).

use super::db::Row;
use super::roles::{BindingKey, BindingTable};
use super::{Store, to_u64};
use crate::roles::member_name;
use crate::service_roles::{
    ServiceBindingFilter, ServiceRole, ServiceRoleBinding, service_resource_name,
};
use crate::{Grant, IamError, Result};

const SERVICE_BINDINGS: BindingTable = BindingTable {
    table: "service_role_bindings",
    on: "service",
};

fn binding(row: &Row) -> Result<ServiceRoleBinding> {
    let (member, role, service, created) = (row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?);
    let role = role.parse::<ServiceRole>().map_err(|_| {
        IamError::StoreCorrupt(format!(
            "service binding of {member} on {service} has role {role:?}"
        ))
    })?;
    Ok(ServiceRoleBinding {
        member,
        role,
        service,
        created: to_u64(created),
    })
}

impl Store {
    /// `esprit iam roles grant … --resource services/SERVICE`: `member` (an account email,
    /// which must exist) gets `role` on `service`. Idempotent, as [`Store::grant_role`].
    pub fn grant_service_role(
        &mut self,
        member: &str,
        role: ServiceRole,
        service: &str,
        now: u64,
    ) -> Result<Grant> {
        SERVICE_BINDINGS.grant(self, &[member], (member, role.name(), service), now)
    }

    /// `esprit iam roles revoke … --resource services/SERVICE`: removes the binding;
    /// [`IamError::NoSuchBinding`] when there is none, [`IamError::UnknownAccount`] when the
    /// member does not exist.
    pub fn revoke_service_role(
        &mut self,
        member: &str,
        role: ServiceRole,
        service: &str,
    ) -> Result<()> {
        self.account(member)?;
        if !SERVICE_BINDINGS.revoke(self, (member, role.name(), service))? {
            return Err(IamError::NoSuchBinding {
                member: member_name(member),
                role: role.name().to_owned(),
                resource: service_resource_name(service),
            });
        }
        Ok(())
    }

    /// The service bindings that match `filter`, by service, role, then member.
    pub fn service_role_bindings(
        &self,
        filter: &ServiceBindingFilter,
    ) -> Result<Vec<ServiceRoleBinding>> {
        let key = BindingKey {
            member: filter.member.as_deref(),
            role: filter.role.map(ServiceRole::name),
            on: filter.service.as_deref(),
        };
        SERVICE_BINDINGS
            .list(self, &key)?
            .iter()
            .map(binding)
            .collect()
    }
}
