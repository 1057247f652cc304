//! Role bindings in the store, on both backends: grant (idempotent, first time kept), list in
//! order and by filter, revoke, and bindings deleted with either account; the same for
//! bindings on services; and the bindings an authorization reads.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use iam::roles::authorize;
use iam::service_roles::authorize_check;
use iam::{BindingFilter, Grant, IamError, Role, ServiceBindingFilter, ServiceRole, Store};
use testkit::TestStore;

const TC: Role = Role::ServiceAccountTokenCreator;
const USER: Role = Role::ServiceAccountUser;
const SC: ServiceRole = ServiceRole::ServiceController;
const SVC: &str = "bookstore.endpoints.my-project.cloud.goog";

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

/// A store with these accounts (in project `my-project`), and their emails.
fn store_with(ts: &TestStore, names: &[&str]) -> (Store, Vec<String>) {
    let mut store = Store::open(ts.location()).unwrap();
    let emails = accounts(&mut store, names);
    (store, emails)
}

fn filter_by_member_and_the_revoke_message(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["caller-one", "target-one", "other-one"]);
    let (a, b, c) = (&e[0], &e[1], &e[2]);
    store.grant_role(a, TC, b, 100).unwrap();
    store.grant_role(a, USER, b, 300).unwrap();
    store.grant_role(c, TC, a, 400).unwrap();
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

fn unknown_accounts_are_refused(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["caller-one"]);
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

fn deleting_an_account_deletes_its_bindings(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["caller-one", "target-one", "other-one"]);
    let (a, b, c) = (&e[0], &e[1], &e[2]);
    store.grant_role(a, TC, b, 1).unwrap(); // a as member
    store.grant_role(c, TC, a, 1).unwrap(); // a as resource
    store.grant_role(c, TC, b, 1).unwrap(); // a not involved
    store.delete_account(a).unwrap();
    let left = store.role_bindings(&BindingFilter::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].member.as_str(), left[0].resource.as_str()),
        (c.as_str(), b.as_str())
    );
}

fn bindings_for_an_authorization(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["caller-one", "delegate-one", "target-one"]);
    let (a, d, t) = (&e[0], &e[1], &e[2]);
    store.grant_role(a, TC, d, 1).unwrap();
    store.grant_role(d, TC, t, 1).unwrap();
    store.grant_role(a, USER, t, 1).unwrap();
    let found = store.token_creator_bindings_on(&[d, t, t]).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(authorize(a, t, std::slice::from_ref(d), &found), Ok(()));
    assert!(authorize(a, t, &[], &found).is_err());
}

fn service_bindings_grant_list_revoke_and_authorize(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["proxy-one", "proxy-two"]);
    let (a, b) = (&e[0], &e[1]);
    // An account-role binding lives in the other table: never listed here.
    store.grant_role(a, TC, b, 50).unwrap();
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
    assert_eq!(
        store
            .service_role_bindings(&ServiceBindingFilter::default())
            .unwrap()
            .len(),
        1
    );
    // Account-role bindings are another table: untouched.
    assert_eq!(
        store
            .role_bindings(&BindingFilter::default())
            .unwrap()
            .len(),
        1
    );
}

fn unknown_members_are_refused_and_deleting_an_account_deletes_its_service_bindings(ts: TestStore) {
    let (mut store, e) = store_with(&ts, &["proxy-one"]);
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

testkit::store_tests!(
    grant_list_revoke,
    filter_by_member_and_the_revoke_message,
    unknown_accounts_are_refused,
    deleting_an_account_deletes_its_bindings,
    bindings_for_an_authorization,
    service_bindings_grant_list_revoke_and_authorize,
    unknown_members_are_refused_and_deleting_an_account_deletes_its_service_bindings,
);
