//! Role bindings on services (`services/SERVICE`): grant, revoke, list, and the bindings a
//! check's authorization needs.

use super::db::{Row, args};
use super::{Store, to_i64, to_u64};
use crate::roles::member_name;
use crate::service_roles::{
    ServiceBindingFilter, ServiceRole, ServiceRoleBinding, service_resource_name,
};
use crate::{Grant, IamError, Result};

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
        let inserted = self.write(|tx| {
            let exists = tx
                .db
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE email = ?1)",
                    args![member],
                )?
                .bool(0)?;
            if !exists {
                return Err(IamError::UnknownAccount(member.to_owned()));
            }
            tx.db.execute(
                "INSERT INTO service_role_bindings (member, role, service, created)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                args![member, role.name(), service, to_i64(now)],
            )
        })?;
        Ok(if inserted == 0 {
            Grant::AlreadyGranted
        } else {
            Grant::Granted
        })
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
        let deleted = self.db.execute(
            "DELETE FROM service_role_bindings WHERE member = ?1 AND role = ?2 AND service = ?3",
            args![member, role.name(), service],
        )?;
        if deleted == 0 {
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
        // coalesce(?N, column): no filter on a column whose value is NULL (not given).
        self.db
            .query(
                "SELECT member, role, service, created FROM service_role_bindings
                 WHERE member = coalesce(?1, member)
                   AND role = coalesce(?2, role)
                   AND service = coalesce(?3, service)
                 ORDER BY service, role, member",
                args![
                    filter.member.as_deref(),
                    filter.role.map(ServiceRole::name),
                    filter.service.as_deref()
                ],
            )?
            .iter()
            .map(binding)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::service_roles::authorize_check;

    const SC: ServiceRole = ServiceRole::ServiceController;
    const SVC: &str = "bookstore.endpoints.my-project.cloud.goog";

    fn store_with(accounts: &[&str]) -> (tempfile::TempDir, Store, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("iam.db")).unwrap();
        let emails = accounts
            .iter()
            .map(|name| store.create_account(name, "my-project", 10).unwrap().email)
            .collect();
        (dir, store, emails)
    }

    #[test]
    fn grant_list_revoke_and_authorize() {
        let (_dir, mut store, e) = store_with(&["proxy-one", "proxy-two"]);
        let (a, b) = (&e[0], &e[1]);
        assert_eq!(
            store.grant_service_role(a, SC, SVC, 100).unwrap(),
            Grant::Granted
        );
        assert_eq!(
            store.grant_service_role(a, SC, SVC, 200).unwrap(),
            Grant::AlreadyGranted
        );
        store
            .grant_service_role(b, SC, "other.example.com", 300)
            .unwrap();
        let all = store
            .service_role_bindings(&ServiceBindingFilter::default())
            .unwrap();
        let shown: Vec<(&str, &str, u64)> = all
            .iter()
            .map(|x| (x.member.as_str(), x.service.as_str(), x.created))
            .collect();
        assert_eq!(
            shown,
            vec![
                (a.as_str(), SVC, 100),
                (b.as_str(), "other.example.com", 300)
            ]
        );
        let for_a = store
            .service_role_bindings(&ServiceBindingFilter {
                member: Some(a.clone()),
                service: Some(SVC.into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(authorize_check(a, SVC, &for_a), Ok(()));
        let for_b = store
            .service_role_bindings(&ServiceBindingFilter {
                member: Some(b.clone()),
                service: Some(SVC.into()),
                ..Default::default()
            })
            .unwrap();
        assert!(authorize_check(b, SVC, &for_b).is_err());

        store.revoke_service_role(a, SC, SVC).unwrap();
        let err = store.revoke_service_role(a, SC, SVC).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "serviceAccount:{a} does not hold roles/servicemanagement.serviceController on \
                 services/{SVC}: nothing to revoke"
            )
        );
        // Account-role bindings are another table: untouched, and not listed here.
        assert_eq!(
            store
                .service_role_bindings(&ServiceBindingFilter::default())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn unknown_members_are_refused_and_deleting_an_account_deletes_its_bindings() {
        let (_dir, mut store, e) = store_with(&["proxy-one"]);
        let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
        let err = store.grant_service_role(ghost, SC, SVC, 1).unwrap_err();
        assert!(
            matches!(&err, IamError::UnknownAccount(x) if x == ghost),
            "{err}"
        );
        let err = store.revoke_service_role(ghost, SC, SVC).unwrap_err();
        assert!(
            matches!(&err, IamError::UnknownAccount(x) if x == ghost),
            "{err}"
        );
        store.grant_service_role(&e[0], SC, SVC, 1).unwrap();
        store.delete_account(&e[0]).unwrap();
        assert!(
            store
                .service_role_bindings(&ServiceBindingFilter::default())
                .unwrap()
                .is_empty()
        );
    }
}
