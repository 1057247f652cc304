//! The store as a whole: `iam migrate` (schema upgrade), `iam store copy` (every table into a
//! new store) and `iam kek generate` (the key that seals server-managed private keys).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use iam::{Store, StoreLocation};

use super::warn_loose;

#[derive(Subcommand)]
pub(super) enum StoreCommand {
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
pub(super) enum KekCommand {
    /// Write a new random key-encryption key (32 bytes, base64url) to a new file, mode 0600.
    Generate {
        /// The file to write. Must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `iam migrate`: "STORE: schema version FROM -> TO" (or "already at version TO").
pub(super) fn migrate(location: &StoreLocation) -> anyhow::Result<ExitCode> {
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
pub(super) fn store_command(command: StoreCommand) -> anyhow::Result<ExitCode> {
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

/// `iam kek generate`: a new key-encryption key in a new file.
pub(super) fn kek(command: KekCommand) -> anyhow::Result<ExitCode> {
    match command {
        KekCommand::Generate { out } => {
            iam::Kek::generate()?.write_new_file(&out)?;
            eprintln!(
                "wrote a new key-encryption key to {} (keep it secret and apart from the store: \
                 it unseals the server-managed private keys)",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
