//! `esprit iam …`: service accounts, their keys, API keys, and the key server (the work is in
//! `iam`).
//!
//! Output for scripts: `accounts create` prints the email, `keys create` the key id,
//! `api-keys create` the API key, each alone on stdout; `--json` lists print a JSON array;
//! `serve` prints its base URL once listening. Confirmations go to stderr. No command but
//! `api-keys create` ever prints an API key: lists show its first 8 characters.
//!
//! One file a command group: [`accounts`], [`keys`], [`api_keys`], [`roles`], [`serve`], and
//! [`store_admin`] (migrate, store copy, kek). This file holds the top-level arguments and what
//! the groups share (opening the store, timestamps, tables).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use iam::{Store, StoreLocation};

mod accounts;
mod api_keys;
mod keys;
mod roles;
mod serve;
mod store_admin;
use accounts::{AccountsCommand, accounts};
use api_keys::{ApiKeysCommand, api_keys};
use keys::{KeysCommand, keys};
use roles::{RolesCommand, roles};
use serve::{ServeArgs, serve};
use store_admin::{KekCommand, StoreCommand, kek, migrate, store_command};

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

/// A list as `--json` asks: a pretty JSON array of `to_json`, or a table of `to_row` under
/// `header`.
fn print_list<T>(
    items: &[T],
    json: bool,
    to_json: impl Fn(&T) -> serde_json::Value,
    header: &[&str],
    to_row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        let list: Vec<_> = items.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(to_row).collect();
        print_table(header, &rows);
    }
    Ok(())
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
        IamCommand::Kek(command) => kek(command),
    }
}
