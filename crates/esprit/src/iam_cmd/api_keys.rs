//! `esprit iam api-keys …`: create, list and revoke API keys. Only `create` ever prints a key;
//! lists show its first 8 characters.

use std::process::ExitCode;

use clap::Subcommand;
use iam::{ApiKey, Revocation, StoreLocation};
use serde_json::json;

use super::{now, open, print_list, rfc3339};

#[derive(Subcommand)]
pub(super) enum ApiKeysCommand {
    /// Create an API key for a project and print it, alone on stdout.
    ///
    /// The key is shown only now: the store keeps its SHA-256, not the key.
    Create {
        /// The consumer project: 6-30 lowercase letters, digits and hyphens, starting with a
        /// letter.
        #[arg(long)]
        project: String,
        /// A display name (at most 63 characters).
        #[arg(long)]
        name: Option<String>,
        /// Print {"key", "id", "project", "name", "created"} as JSON instead of the key alone.
        #[arg(long)]
        json: bool,
    },
    /// List API keys, revoked ones included.
    ///
    /// Shows each key's first 8 characters, never the key.
    List {
        /// Only this project's keys.
        #[arg(long)]
        project: Option<String>,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by id (revoking a revoked key succeeds and changes nothing).
    ///
    /// Checks answer "revoked" from the next request on; a proxy may keep a cached "valid"
    /// answer a little longer.
    Revoke {
        /// The key's id (see `api-keys list`), not the key.
        key_id: String,
    },
}

/// What `api-keys list --json` shows of a key: never the key, its prefix.
fn api_key_json(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id, "project": k.project, "name": k.name, "prefix": k.prefix,
        "created": rfc3339(k.created), "revoked": k.revoked.is_some(),
    })
}

pub(super) fn api_keys(path: &StoreLocation, command: ApiKeysCommand) -> anyhow::Result<ExitCode> {
    let mut store = open(path)?;
    match command {
        ApiKeysCommand::Create {
            project,
            name,
            json,
        } => {
            let (key, record) = store.create_api_key(&project, name.as_deref(), now()?)?;
            if json {
                let out = json!({
                    "key": key, "id": record.id, "project": record.project,
                    "name": record.name, "created": rfc3339(record.created),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{key}");
            }
            eprintln!(
                "created API key {} for project {} (keep it secret: it is shown only now)",
                record.id, record.project
            );
        }
        ApiKeysCommand::List { project, json } => {
            print_list(
                &store.api_keys(project.as_deref())?,
                json,
                api_key_json,
                &["ID", "PROJECT", "KEY", "STATE", "CREATED", "NAME"],
                |k| {
                    vec![
                        k.id.clone(),
                        k.project.clone(),
                        format!("{}…", k.prefix),
                        if k.revoked.is_some() {
                            "REVOKED"
                        } else {
                            "ACTIVE"
                        }
                        .to_owned(),
                        rfc3339(k.created),
                        k.name.clone().unwrap_or_default(),
                    ]
                },
            )?;
        }
        ApiKeysCommand::Revoke { key_id } => match store.revoke_api_key(&key_id, now()?)? {
            Revocation::Revoked => eprintln!("revoked API key {key_id}"),
            Revocation::AlreadyRevoked { at } => {
                eprintln!("API key {key_id} was already revoked at {}", rfc3339(at));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
