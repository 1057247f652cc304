//! The `esprit iam … --store URL` runner the store tests share (`iam_store_cli.rs`,
//! `iam_store_upgrade_cli.rs`): the binary as a process on a [`TestStore`], SQLite or
//! PostgreSQL.

use std::ffi::OsStr;
use std::process::{Command, Output};

use testkit::{TestStore, cli};

use super::ESPRIT;

pub const NOW: u64 = 1_750_000_000;
pub const SERVICE: &str = "bookstore.endpoints.my-project.cloud.goog";

/// `esprit iam ARGS --store STORE`.
pub fn iam(ts: &TestStore, args: &[&str]) -> Command {
    let mut command = cli::command(ESPRIT);
    command.arg("iam").args(args).arg("--store").arg(ts.arg());
    command
}

pub fn run(ts: &TestStore, args: &[&str]) -> Output {
    iam(ts, args).output().unwrap()
}

pub fn ok(ts: &TestStore, args: &[&str]) -> String {
    cli::ok(&mut iam(ts, args))
}

/// `esprit iam store copy --from FROM --to TO`.
pub fn store_copy(from: impl AsRef<OsStr>, to: String) -> Command {
    let mut command = cli::command(ESPRIT);
    command
        .args(["iam", "store", "copy", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to);
    command
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
