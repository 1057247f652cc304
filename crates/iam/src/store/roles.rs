//! Role bindings in the store: grant, revoke, list, and the bindings an authorization needs.

use super::db::{Row, args};
use super::{Store, to_i64, to_u64};
use crate::roles::{BindingFilter, Grant, Role, RoleBinding, member_name, resource_name};
use crate::{IamError, Result};

fn binding(row: &Row) -> Result<RoleBinding> {
    let (member, role, resource, created) = (row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?);
    let role = role.parse::<Role>().map_err(|_| {
        IamError::StoreCorrupt(format!(
            "binding of {member} on {resource} has role {role:?}"
        ))
    })?;
    Ok(RoleBinding {
        member,
        role,
        resource,
        created: to_u64(created),
    })
}

impl Store {
    /// `esprit iam roles grant`: `member` (an account email) gets `role` on `resource` (an
    /// account email). Both accounts must exist. Idempotent: granting a binding that exists
    /// succeeds with [`Grant::AlreadyGranted`].
    pub fn grant_role(
        &mut self,
        member: &str,
        role: Role,
        resource: &str,
        now: u64,
    ) -> Result<Grant> {
        let inserted = self.write(|tx| {
            for email in [member, resource] {
                let exists = tx
                    .db
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM accounts WHERE email = ?1)",
                        args![email],
                    )?
                    .bool(0)?;
                if !exists {
                    return Err(IamError::UnknownAccount(email.to_owned()));
                }
            }
            tx.db.execute(
                "INSERT INTO role_bindings (member, role, resource, created)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                args![member, role.name(), resource, to_i64(now)],
            )
        })?;
        Ok(if inserted == 0 {
            Grant::AlreadyGranted
        } else {
            Grant::Granted
        })
    }

    /// `esprit iam roles revoke`: removes the binding; [`IamError::NoSuchBinding`] when there
    /// is none (as gcloud's `remove-iam-policy-binding`), [`IamError::UnknownAccount`] when an
    /// account does not exist.
    pub fn revoke_role(&mut self, member: &str, role: Role, resource: &str) -> Result<()> {
        self.account(member)?;
        self.account(resource)?;
        let deleted = self.db.execute(
            "DELETE FROM role_bindings WHERE member = ?1 AND role = ?2 AND resource = ?3",
            args![member, role.name(), resource],
        )?;
        if deleted == 0 {
            return Err(IamError::NoSuchBinding {
                member: member_name(member),
                role: role.name().to_owned(),
                resource: resource_name(resource),
            });
        }
        Ok(())
    }

    /// The bindings that match `filter`, by resource, role, then member.
    pub fn role_bindings(&self, filter: &BindingFilter) -> Result<Vec<RoleBinding>> {
        // coalesce(?N, column): no filter on a column whose value is NULL (not given).
        self.db
            .query(
                "SELECT member, role, resource, created FROM role_bindings
                 WHERE member = coalesce(?1, member)
                   AND role = coalesce(?2, role)
                   AND resource = coalesce(?3, resource)
                 ORDER BY resource, role, member",
                args![
                    filter.member.as_deref(),
                    filter.role.map(Role::name),
                    filter.resource.as_deref()
                ],
            )?
            .iter()
            .map(binding)
            .collect()
    }

    /// The Token Creator bindings on each of `resources` (account emails): what
    /// [`crate::roles::authorize`] needs for a chain ending in these accounts.
    pub fn token_creator_bindings_on(&self, resources: &[&str]) -> Result<Vec<RoleBinding>> {
        let mut found = Vec::new();
        let mut seen: Vec<&str> = Vec::with_capacity(resources.len());
        for resource in resources {
            if seen.contains(resource) {
                continue;
            }
            seen.push(resource);
            found.extend(self.role_bindings(&BindingFilter {
                member: None,
                role: Some(Role::ServiceAccountTokenCreator),
                resource: Some((*resource).to_owned()),
            })?);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::authorize;

    fn store_with(accounts: &[&str]) -> (tempfile::TempDir, Store, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("iam.db")).unwrap();
        let emails = accounts
            .iter()
            .map(|name| store.create_account(name, "my-project", 10).unwrap().email)
            .collect();
        (dir, store, emails)
    }

    const TC: Role = Role::ServiceAccountTokenCreator;
    const USER: Role = Role::ServiceAccountUser;

    #[test]
    fn grant_list_revoke() {
        let (_dir, mut store, e) = store_with(&["caller-one", "target-one", "other-one"]);
        let (a, b, c) = (&e[0], &e[1], &e[2]);
        assert_eq!(store.grant_role(a, TC, b, 100).unwrap(), Grant::Granted);
        assert_eq!(
            store.grant_role(a, TC, b, 200).unwrap(),
            Grant::AlreadyGranted
        );
        assert_eq!(store.grant_role(a, USER, b, 300).unwrap(), Grant::Granted);
        assert_eq!(store.grant_role(c, TC, a, 400).unwrap(), Grant::Granted);

        let all = store.role_bindings(&BindingFilter::default()).unwrap();
        let shown: Vec<(&str, Role, &str, u64)> = all
            .iter()
            .map(|x| (x.member.as_str(), x.role, x.resource.as_str(), x.created))
            .collect();
        // By resource, role, member; the first grant's time is kept.
        assert_eq!(
            shown,
            vec![
                (c.as_str(), TC, a.as_str(), 400),
                (a.as_str(), TC, b.as_str(), 100),
                (a.as_str(), USER, b.as_str(), 300),
            ]
        );
        let on_b = store
            .role_bindings(&BindingFilter {
                resource: Some(b.clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(on_b.len(), 2);
        let users = store
            .role_bindings(&BindingFilter {
                role: Some(USER),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(users.len(), 1);
        let of_c = store
            .role_bindings(&BindingFilter {
                member: Some(c.clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(of_c.len(), 1);

        store.revoke_role(a, TC, b).unwrap();
        let err = store.revoke_role(a, TC, b).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "serviceAccount:{a} does not hold roles/iam.serviceAccountTokenCreator on \
                 projects/-/serviceAccounts/{b}: nothing to revoke"
            )
        );
        assert_eq!(
            store
                .role_bindings(&BindingFilter::default())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unknown_accounts_are_refused() {
        let (_dir, mut store, e) = store_with(&["caller-one"]);
        let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
        for (member, resource) in [(e[0].as_str(), ghost), (ghost, e[0].as_str())] {
            let err = store.grant_role(member, TC, resource, 1).unwrap_err();
            assert!(
                matches!(&err, IamError::UnknownAccount(x) if x == ghost),
                "{err}"
            );
            let err = store.revoke_role(member, TC, resource).unwrap_err();
            assert!(
                matches!(&err, IamError::UnknownAccount(x) if x == ghost),
                "{err}"
            );
        }
        assert!(
            store
                .role_bindings(&BindingFilter::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn deleting_an_account_deletes_its_bindings() {
        let (_dir, mut store, e) = store_with(&["caller-one", "target-one", "other-one"]);
        let (a, b, c) = (&e[0], &e[1], &e[2]);
        store.grant_role(a, TC, b, 1).unwrap(); // a as member
        store.grant_role(c, TC, a, 1).unwrap(); // a as resource
        store.grant_role(c, TC, b, 1).unwrap(); // a not involved
        store
            .db
            .execute("DELETE FROM accounts WHERE email = ?1", super::args![a])
            .unwrap();
        let left = store.role_bindings(&BindingFilter::default()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].member.as_str(), left[0].resource.as_str()),
            (c.as_str(), b.as_str())
        );
    }

    #[test]
    fn bindings_for_an_authorization() {
        let (_dir, mut store, e) = store_with(&["caller-one", "delegate-one", "target-one"]);
        let (a, d, t) = (&e[0], &e[1], &e[2]);
        store.grant_role(a, TC, d, 1).unwrap();
        store.grant_role(d, TC, t, 1).unwrap();
        store.grant_role(a, USER, t, 1).unwrap();
        let found = store.token_creator_bindings_on(&[d, t, t]).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(authorize(a, t, std::slice::from_ref(d), &found), Ok(()));
        assert!(authorize(a, t, &[], &found).is_err());
    }
}
