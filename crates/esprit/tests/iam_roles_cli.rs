//! `esprit iam roles …` run as a process on temporary stores: granting, listing and revoking
//! roles on accounts and services, and every refusal a user can meet.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{Cli, text};
use serde_json::Value;

const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";
const SA_USER: &str = "roles/iam.serviceAccountUser";

impl Cli {
    fn roles_json(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["roles", "list", "--json"];
        args.extend_from_slice(filters);
        let out = self.ok(&args);
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

#[test]
fn roles_grant_list_revoke() {
    let cli = Cli::new();
    let caller = cli.account("caller-one");
    let target = cli.account("target-one");
    let member = format!("serviceAccount:{caller}");
    let resource = format!("projects/-/serviceAccounts/{target}");

    let granted = cli.run(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &resource,
    ]);
    assert!(granted.status.success(), "{}", text(&granted.stderr));
    assert_eq!(
        text(&granted.stderr).trim(),
        format!("granted {TOKEN_CREATOR} on {resource} to {member}")
    );
    // Again (with the bare email as resource): succeeds, one binding.
    let again = cli.run(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &target,
    ]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("already holds"),
        "{}",
        text(&again.stderr)
    );
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        SA_USER,
        "--resource",
        &target,
    ]);
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &format!("serviceAccount:{target}"),
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &caller,
    ]);

    let all = cli.roles_json(&[]);
    assert_eq!(all.len(), 3, "{all:?}");
    let on_target = cli.roles_json(&["--resource", &resource]);
    assert_eq!(on_target.len(), 2);
    assert_eq!(on_target[0]["member"], member.as_str());
    assert_eq!(on_target[0]["role"], TOKEN_CREATOR);
    assert_eq!(on_target[0]["resource"], resource.as_str());
    assert!(on_target[0]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(on_target[1]["role"], SA_USER);
    assert_eq!(cli.roles_json(&["--resource", &target]).len(), 2);
    assert_eq!(cli.roles_json(&["--role", SA_USER]).len(), 1);
    assert_eq!(cli.roles_json(&["--member", &member]).len(), 2);
    let table = cli.ok(&["roles", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("RESOURCE"), "{table}");

    cli.ok(&[
        "roles",
        "revoke",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &resource,
    ]);
    assert_eq!(cli.roles_json(&["--resource", &resource]).len(), 1);
    // Revoking what is not granted is an error, as gcloud's remove-iam-policy-binding.
    let err = cli.fails(
        &[
            "roles",
            "revoke",
            "--member",
            &member,
            "--role",
            TOKEN_CREATOR,
            "--resource",
            &resource,
        ],
        1,
    );
    assert_eq!(
        err.trim(),
        format!("esprit: {member} does not hold {TOKEN_CREATOR} on {resource}: nothing to revoke")
    );

    // Deleting an account deletes its bindings, as member and as resource.
    let third = cli.account("third-one");
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &format!("serviceAccount:{third}"),
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &third,
    ]);
    assert_eq!(cli.roles_json(&[]).len(), 3);
    cli.ok(&["accounts", "delete", &caller]);
    let left = cli.roles_json(&[]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0]["member"],
        format!("serviceAccount:{third}").as_str()
    );
}

#[test]
fn roles_refuse_unknown_roles_members_and_resources() {
    let cli = Cli::new();
    let caller = cli.account("caller-one");
    let member = format!("serviceAccount:{caller}");
    let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--member",
                &member,
                "--role",
                "roles/owner",
                "--resource",
                &caller,
            ],
            "esprit: unknown role \"roles/owner\": esprit knows roles/iam.serviceAccountTokenCreator and roles/iam.serviceAccountUser",
        ),
        (
            &[
                "--member",
                &caller,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "expected serviceAccount:EMAIL",
        ),
        (
            &[
                "--member",
                "user:alice@example.com",
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "members of kind \"user\" are not supported",
        ),
        (
            &[
                "--member",
                "serviceAccount:alice@example.com",
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "esprit: invalid member \"serviceAccount:alice@example.com\"",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                "projects/my-project/serviceAccounts/x",
            ],
            "esprit: invalid resource",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                "bucket/x",
            ],
            "esprit: invalid resource \"bucket/x\"",
        ),
        (
            &[
                "--member",
                &format!("serviceAccount:{ghost}"),
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "does not exist",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                ghost,
            ],
            "does not exist",
        ),
    ];
    for (flags, want) in cases {
        for verb in ["grant", "revoke"] {
            let mut args = vec!["roles", verb];
            args.extend_from_slice(flags);
            let err = cli.fails(&args, 1);
            assert!(err.contains(want), "{args:?}: {err}");
            if want.contains("does not exist") {
                assert!(err.contains(ghost), "{args:?}: {err}");
            }
        }
    }
    assert!(cli.roles_json(&[]).is_empty());
    let err = cli.fails(&["roles", "list", "--role", "roles/editor"], 1);
    assert!(err.contains("unknown role"), "{err}");
    let err = cli.fails(&["roles", "grant", "--member", &member], 2);
    assert!(err.contains("--role"), "{err}");
}
