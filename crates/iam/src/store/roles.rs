//! Role bindings in the store: grant, revoke, list, and the bindings an authorization needs.
//! Two tables hold them, with the same shape: `role_bindings` (on accounts) and
//! `service_role_bindings` (on services, [`super::service_roles`]); [`BindingTable`] is the
//! store code both share.

use super::db::{Row, args};
use super::{Store, to_i64, to_u64};
use crate::roles::{BindingFilter, Grant, Role, RoleBinding, member_name, resource_name};
use crate::{IamError, Result};

/// A table of role bindings: `member` (an account email) holds `role` on the value of column
/// `on`, created at `created`; its primary key is `(member, role, on)`.
pub(super) struct BindingTable {
    pub(super) table: &'static str,
    pub(super) on: &'static str,
}

const ACCOUNT_BINDINGS: BindingTable = BindingTable {
    table: "role_bindings",
    on: "resource",
};

/// One binding, as the filters and rows of a [`BindingTable`] see it.
pub(super) struct BindingKey<'a> {
    pub(super) member: Option<&'a str>,
    pub(super) role: Option<&'a str>,
    pub(super) on: Option<&'a str>,
}

impl BindingTable {
    /// Records the binding, in one write transaction after checking that each of `accounts`
    /// exists ([`IamError::UnknownAccount`]). Idempotent: a binding that exists keeps its
    /// time and gives [`Grant::AlreadyGranted`].
    pub(super) fn grant(
        &self,
        store: &Store,
        accounts: &[&str],
        (member, role, on): (&str, &str, &str),
        now: u64,
    ) -> Result<Grant> {
        let inserted = store.write(|tx| {
            for email in accounts {
                let exists = tx
                    .db
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM accounts WHERE email = ?1)",
                        args![*email],
                    )?
                    .bool(0)?;
                if !exists {
                    return Err(IamError::UnknownAccount((*email).to_owned()));
                }
            }
            tx.db.execute(
                &format!(
                    "INSERT INTO {} (member, role, {}, created)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    self.table, self.on
                ),
                args![member, role, on, to_i64(now)],
            )
        })?;
        Ok(if inserted == 0 {
            Grant::AlreadyGranted
        } else {
            Grant::Granted
        })
    }

    /// Deletes the binding; whether there was one.
    pub(super) fn revoke(
        &self,
        store: &Store,
        (member, role, on): (&str, &str, &str),
    ) -> Result<bool> {
        let deleted = store.db.execute(
            &format!(
                "DELETE FROM {} WHERE member = ?1 AND role = ?2 AND {} = ?3",
                self.table, self.on
            ),
            args![member, role, on],
        )?;
        Ok(deleted > 0)
    }

    /// The rows `(member, role, on, created)` that match `filter` (`None`: any), by `on`,
    /// role, then member.
    pub(super) fn list(&self, store: &Store, filter: &BindingKey<'_>) -> Result<Vec<Row>> {
        // coalesce(?N, column): no filter on a column whose value is NULL (not given).
        let on = self.on;
        store.db.query(
            &format!(
                "SELECT member, role, {on}, created FROM {}
                 WHERE member = coalesce(?1, member)
                   AND role = coalesce(?2, role)
                   AND {on} = coalesce(?3, {on})
                 ORDER BY {on}, role, member",
                self.table
            ),
            args![filter.member, filter.role, filter.on],
        )
    }
}

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
        ACCOUNT_BINDINGS.grant(
            self,
            &[member, resource],
            (member, role.name(), resource),
            now,
        )
    }

    /// `esprit iam roles revoke`: removes the binding; [`IamError::NoSuchBinding`] when there
    /// is none (as gcloud's `remove-iam-policy-binding`), [`IamError::UnknownAccount`] when an
    /// account does not exist.
    pub fn revoke_role(&mut self, member: &str, role: Role, resource: &str) -> Result<()> {
        self.account(member)?;
        self.account(resource)?;
        if !ACCOUNT_BINDINGS.revoke(self, (member, role.name(), resource))? {
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
        let key = BindingKey {
            member: filter.member.as_deref(),
            role: filter.role.map(Role::name),
            on: filter.resource.as_deref(),
        };
        ACCOUNT_BINDINGS
            .list(self, &key)?
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
