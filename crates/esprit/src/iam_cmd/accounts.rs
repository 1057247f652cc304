//! `esprit iam accounts …`: create, list and delete service accounts.

use std::process::ExitCode;

use clap::Subcommand;
use iam::StoreLocation;
use serde_json::json;

use super::{now, open, print_list, rfc3339};

#[derive(Subcommand)]
pub(super) enum AccountsCommand {
    /// Create NAME@PROJECT.iam.gserviceaccount.com and print the email.
    Create {
        /// The account id: 6-30 lowercase letters, digits and hyphens, starting with a letter.
        name: String,
        /// The project id (same rules).
        #[arg(long)]
        project: String,
    },
    /// List the accounts.
    List {
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete an account with its keys, access tokens and role bindings (as member and as
    /// resource); tokens it holds are refused from then on.
    Delete {
        /// The account's email.
        email: String,
    },
}

pub(super) fn accounts(path: &StoreLocation, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    let mut store = open(path)?;
    match command {
        AccountsCommand::Create { name, project } => {
            let account = store.create_account(&name, &project, now()?)?;
            println!("{}", account.email);
        }
        AccountsCommand::List { json } => {
            print_list(
                &store.accounts()?,
                json,
                |a| {
                    json!({
                        "email": a.email, "account_id": a.account_id,
                        "project_id": a.project_id, "unique_id": a.unique_id,
                        "created": rfc3339(a.created),
                    })
                },
                &["EMAIL", "PROJECT", "UNIQUE_ID", "CREATED"],
                |a| {
                    vec![
                        a.email.clone(),
                        a.project_id.clone(),
                        a.unique_id.clone(),
                        rfc3339(a.created),
                    ]
                },
            )?;
        }
        AccountsCommand::Delete { email } => {
            store.delete_account(&email)?;
            eprintln!(
                "deleted service account {email} with its keys, access tokens and role bindings"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
