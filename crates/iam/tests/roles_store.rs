//! Role bindings in the store, on both backends: grant (idempotent, first time kept), list in
//! order and by filter, revoke, and bindings deleted with either account.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use iam::{BindingFilter, Grant, IamError, Role, Store};
use testkit::TestStore;

const TC: Role = Role::ServiceAccountTokenCreator;
const USER: Role = Role::ServiceAccountUser;

fn accounts(store: &mut Store, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| store.create_account(name, "my-project", 10).unwrap().email)
        .collect()
}

fn grant_list_revoke(ts: TestStore) {
    let mut store = Store::open(ts.location()).unwrap();
    let e = accounts(
        &mut store,
        &["caller-one", "target-one", "other-one", "caller-1"],
    );
    let (a, b, c, d) = (&e[0], &e[1], &e[2], &e[3]);
    assert_eq!(store.grant_role(a, TC, b, 100).unwrap(), Grant::Granted);
    assert_eq!(
        store.grant_role(a, TC, b, 200).unwrap(),
        Grant::AlreadyGranted
    );
    assert_eq!(store.grant_role(a, USER, b, 300).unwrap(), Grant::Granted);
    assert_eq!(store.grant_role(c, TC, a, 400).unwrap(), Grant::Granted);
    assert_eq!(store.grant_role(d, TC, b, 500).unwrap(), Grant::Granted);
    let shown = |store: &Store, filter: &BindingFilter| -> Vec<(String, Role, String, u64)> {
        store
            .role_bindings(filter)
            .unwrap()
            .into_iter()
            .map(|x| (x.member, x.role, x.resource, x.created))
            .collect()
    };
    // By resource, role, member, in byte order; the first grant's time is kept.
    assert_eq!(
        shown(&store, &BindingFilter::default()),
        vec![
            (c.clone(), TC, a.clone(), 400),
            (d.clone(), TC, b.clone(), 500),
            (a.clone(), TC, b.clone(), 100),
            (a.clone(), USER, b.clone(), 300),
        ]
    );
    let on_b = BindingFilter {
        resource: Some(b.clone()),
        ..Default::default()
    };
    assert_eq!(shown(&store, &on_b).len(), 3);
    let users = BindingFilter {
        role: Some(USER),
        ..Default::default()
    };
    assert_eq!(shown(&store, &users).len(), 1);
    let of_a_on_b = BindingFilter {
        member: Some(a.clone()),
        resource: Some(b.clone()),
        role: None,
    };
    assert_eq!(shown(&store, &of_a_on_b).len(), 2);

    store.revoke_role(a, TC, b).unwrap();
    assert!(matches!(
        store.revoke_role(a, TC, b),
        Err(IamError::NoSuchBinding { .. })
    ));
    let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
    assert!(matches!(
        store.grant_role(ghost, TC, a, 1),
        Err(IamError::UnknownAccount(x)) if x == ghost
    ));
    // Deleting an account deletes its bindings, as member and as resource.
    store.delete_account(a).unwrap();
    assert_eq!(
        shown(&store, &BindingFilter::default()),
        vec![(d.clone(), TC, b.clone(), 500)]
    );
}

testkit::store_tests!(grant_list_revoke);
