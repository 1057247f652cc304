//! `esprit iam …`: service accounts, their keys, API keys, and the key server (the work is in
//! `iam`).
//!
//! Output for scripts: `accounts create` prints the email, `keys create` the key id,
//! `api-keys create` the API key, each alone on stdout; `--json` lists print a JSON array;
//! `serve` prints its base URL once listening. Confirmations go to stderr. No command but
//! `api-keys create` ever prints an API key: lists show its first 8 characters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use iam::{ApiKey, KeyAlgorithm, KeyServerUrl, KeyStatus, Revocation, Store, StoreLocation};
use serde_json::json;

mod roles;
mod serve;
use roles::{RolesCommand, roles};
use serve::{ServeArgs, serve};

#[derive(Args)]
pub struct IamArgs {
    /// The IAM store: a SQLite file (created if missing), or a PostgreSQL database as
    /// postgres://USER:PASSWORD@HOST:PORT/DB (PostgreSQL 15+; the database must exist; TLS by
    /// libpq's ?sslmode=disable|prefer|require|verify-ca|verify-full and &sslrootcert=FILE,
    /// required to any non-loopback host unless sslmode says otherwise). Holds accounts, public
    /// keys and API-key hashes: never a private key or an API key.
    #[arg(
        long,
        global = true,
        env = iam::STORE_ENV,
        default_value = iam::DEFAULT_STORE,
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    store: StoreLocation,
    #[command(subcommand)]
    command: IamCommand,
}

#[derive(Subcommand)]
enum IamCommand {
    /// Create and list service accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Create, list, disable, enable and delete service-account keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create, list and revoke API keys (checked by `iam serve` for the proxy).
    #[command(subcommand)]
    ApiKeys(ApiKeysCommand),
    /// Grant, revoke and list roles on service accounts (roles/iam.serviceAccountTokenCreator,
    /// roles/iam.serviceAccountUser) and on services (roles/servicemanagement.serviceController).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Serve the accounts' public keys at Google's paths (X.509 map and JWKS) and answer API
    /// key checks (POST /v1/services/{service}:check); with --issuer-url, also the token service
    /// (OpenID discovery, its certificates, POST /token).
    Serve(ServeArgs),
    /// The key-encryption key that seals the server-managed private keys (`iam serve
    /// --kek-file`, or ESPRIT_IAM_KEK).
    #[command(subcommand)]
    Kek(KekCommand),
    /// Bring the store's schema up to date (creating the store if new) and print the versions
    /// before and after. Every command does this on opening; this does only that.
    Migrate,
    /// Whole-store operations.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every table of one store into a new, empty one (e.g. a SQLite file into
    /// PostgreSQL), in one transaction on the target, and print the rows copied per table.
    /// The source must be at this esprit's schema version (`iam migrate` it first).
    Copy {
        /// The store to copy: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        from: StoreLocation,
        /// The store to copy into (created and migrated if new; must hold no rows).
        #[arg(long, value_name = "PATH|URL")]
        to: StoreLocation,
    },
}

#[derive(Subcommand)]
enum KekCommand {
    /// Write a new random key-encryption key (32 bytes, base64url) to a new file, mode 0600.
    Generate {
        /// The file to write. Must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
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

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    /// RSA 2048 (what Google makes).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256.
    #[value(name = "ES256")]
    Es256,
}

impl From<AlgorithmArg> for KeyAlgorithm {
    fn from(arg: AlgorithmArg) -> KeyAlgorithm {
        match arg {
            AlgorithmArg::Rs256 => KeyAlgorithm::Rs256,
            AlgorithmArg::Es256 => KeyAlgorithm::Es256,
        }
    }
}

fn parse_key_server_url(text: &str) -> Result<KeyServerUrl, String> {
    KeyServerUrl::parse(text).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and write its Google JSON key file (mode 0600; never overwrites).
    /// Prints the key id. Only the public key is kept in the store.
    Create {
        /// The account's email.
        email: String,
        /// The key file to write. Must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's algorithm.
        #[arg(long, value_enum, ignore_case = true, default_value = "RS256")]
        algorithm: AlgorithmArg,
        /// Where `esprit iam serve` is reachable; the key file's `client_x509_cert_url` is
        /// {URL}/robot/v1/metadata/x509/{email}.
        #[arg(
            long,
            env = "ESPRIT_IAM_BASE_URL",
            default_value = KeyServerUrl::DEFAULT,
            value_name = "URL",
            value_parser = parse_key_server_url
        )]
        issuer_base_url: KeyServerUrl,
        /// The key file's `token_uri`, where Google's client libraries ask for tokens: the
        /// token service of `esprit iam serve --issuer-url URL` is at URL/token.
        #[arg(
            long,
            env = "ESPRIT_TOKEN_URI",
            default_value = GOOGLE_TOKEN_URI,
            value_name = "URL"
        )]
        token_uri: String,
    },
    /// List an account's keys (enabled and disabled).
    List {
        /// The account's email.
        email: String,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop publishing a key (tokens signed with it stop verifying once caches expire).
    Disable { email: String, key_id: String },
    /// Publish a disabled key again.
    Enable { email: String, key_id: String },
    /// Delete a key for good.
    Delete { email: String, key_id: String },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
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

/// Google's token endpoint: the `token_uri` of key files unless `--token-uri` says otherwise.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn open(location: &StoreLocation) -> anyhow::Result<Store> {
    let store = Store::open(location)?;
    warn_loose(location);
    Ok(store)
}

/// Reported on every open (not refused): whoever may write the store may add keys the key
/// server publishes.
fn warn_loose(location: &StoreLocation) {
    if let StoreLocation::Sqlite(path) = location {
        for loose in iam::loose_files(path) {
            eprintln!("esprit: warning: {loose}");
        }
    }
}

/// `iam migrate`: "STORE: schema version FROM -> TO" (or "already at version TO").
fn migrate(location: &StoreLocation) -> anyhow::Result<ExitCode> {
    let (_store, migration) = Store::open_migrated(location)?;
    warn_loose(location);
    if migration.from == migration.to {
        println!(
            "{location}: schema version {} (already up to date)",
            migration.to
        );
    } else {
        println!(
            "{location}: schema version {} -> {}",
            migration.from, migration.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `iam store copy`: one line per table, "TABLE: N rows".
fn store_command(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Copy { from, to } => {
            let report = iam::copy_store(&from, &to)
                .with_context(|| format!("copying the IAM store {from} to {to}"))?;
            for (table, rows) in &report.tables {
                println!("{table}: {rows} rows");
            }
            let total: u64 = report.tables.iter().map(|(_, rows)| rows).sum();
            eprintln!("copied {total} rows from {from} to {to}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows as columns two spaces apart, the last column unpadded.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    // Widths in characters, as `format!` pads (a key prefix ends with the 3-byte `…`).
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn run(args: IamArgs) -> anyhow::Result<ExitCode> {
    let store = args.store;
    match args.command {
        IamCommand::Accounts(command) => accounts(&store, command),
        IamCommand::Keys(command) => keys(&store, command),
        IamCommand::ApiKeys(command) => api_keys(&store, command),
        IamCommand::Roles(command) => roles(&store, command),
        IamCommand::Serve(serve_args) => serve(&store, serve_args),
        IamCommand::Migrate => migrate(&store),
        IamCommand::Store(command) => store_command(command),
        IamCommand::Kek(KekCommand::Generate { out }) => {
            iam::Kek::generate()?.write_new_file(&out)?;
            eprintln!(
                "wrote a new key-encryption key to {} (keep it secret and apart from the store: \
                 it unseals the server-managed private keys)",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn accounts(path: &StoreLocation, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    let mut store = open(path)?;
    match command {
        AccountsCommand::Create { name, project } => {
            let account = store.create_account(&name, &project, now()?)?;
            println!("{}", account.email);
        }
        AccountsCommand::List { json } => {
            let accounts = store.accounts()?;
            if json {
                let list: Vec<_> = accounts
                    .iter()
                    .map(|a| {
                        json!({
                            "email": a.email, "account_id": a.account_id,
                            "project_id": a.project_id, "unique_id": a.unique_id,
                            "created": rfc3339(a.created),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| {
                        vec![
                            a.email.clone(),
                            a.project_id.clone(),
                            a.unique_id.clone(),
                            rfc3339(a.created),
                        ]
                    })
                    .collect();
                print_table(&["EMAIL", "PROJECT", "UNIQUE_ID", "CREATED"], &rows);
            }
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

fn keys(path: &StoreLocation, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let mut store = open(path)?;
    match command {
        KeysCommand::Create {
            email,
            out,
            algorithm,
            issuer_base_url,
            token_uri,
        } => {
            let token_uri = (token_uri != GOOGLE_TOKEN_URI).then_some(token_uri.as_str());
            let key = store.create_key_with_token_uri(
                &email,
                algorithm.into(),
                &issuer_base_url,
                token_uri,
                &out,
                now()?,
            )?;
            println!("{}", key.key_id);
            eprintln!(
                "created {} key {} for {email}; key file {} (keep it secret: it holds the only \
                 copy of the private key)",
                key.algorithm,
                key.key_id,
                out.display()
            );
        }
        KeysCommand::List { email, json } => {
            let keys = store.keys(&email)?;
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "key_id": k.key_id, "algorithm": k.algorithm.name(),
                            "state": k.state.name(), "created": rfc3339(k.created),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.key_id.clone(),
                            k.algorithm.to_string(),
                            k.state.to_string(),
                            rfc3339(k.created),
                        ]
                    })
                    .collect();
                print_table(&["KEY_ID", "ALGORITHM", "STATE", "CREATED"], &rows);
            }
        }
        KeysCommand::Disable { email, key_id } => {
            store.set_key_state(&email, &key_id, KeyStatus::Disabled)?;
            eprintln!("disabled key {key_id} of {email}");
        }
        KeysCommand::Enable { email, key_id } => {
            store.set_key_state(&email, &key_id, KeyStatus::Enabled)?;
            eprintln!("enabled key {key_id} of {email}");
        }
        KeysCommand::Delete { email, key_id } => {
            store.delete_key(&email, &key_id)?;
            eprintln!("deleted key {key_id} of {email}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `api-keys list --json` shows of a key: never the key, its prefix.
fn api_key_json(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id, "project": k.project, "name": k.name, "prefix": k.prefix,
        "created": rfc3339(k.created), "revoked": k.revoked.is_some(),
    })
}

fn api_keys(path: &StoreLocation, command: ApiKeysCommand) -> anyhow::Result<ExitCode> {
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
            let keys = store.api_keys(project.as_deref())?;
            if json {
                let list: Vec<_> = keys.iter().map(api_key_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
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
                    })
                    .collect();
                print_table(&["ID", "PROJECT", "KEY", "STATE", "CREATED", "NAME"], &rows);
            }
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
