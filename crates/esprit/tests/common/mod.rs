//! The `esprit iam …` runner the IAM CLI tests share (`iam_cli.rs`, `iam_roles_cli.rs`): the
//! binary run as a process on a temporary store, with helpers for the commands most tests
//! start with.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it; tests unwrap

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use testkit::cli;

pub mod store_cli;

/// `esprit iam` on a store of its own in a temporary folder.
pub struct Cli {
    pub dir: tempfile::TempDir,
    /// The store file (`--store`).
    pub store: PathBuf,
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

pub const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

pub fn command() -> Command {
    cli::command(ESPRIT)
}

impl Cli {
    pub fn new() -> Cli {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("iam.db");
        Cli { dir, store }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `esprit iam ARGS --store STORE`.
    pub fn run(&self, args: &[&str]) -> Output {
        command()
            .arg("iam")
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .output()
            .expect("run esprit")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "esprit iam {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs and asserts exit code `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        cli::assert_fails(&format!("esprit iam {args:?}"), &self.run(args), code)
    }

    pub fn account(&self, name: &str) -> String {
        self.ok(&["accounts", "create", name, "--project", "my-project"])
            .trim()
            .to_owned()
    }

    pub fn key(&self, email: &str, out: &Path, extra: &[&str]) -> String {
        let out = out.to_str().expect("utf-8 path");
        let mut args = vec!["keys", "create", email, "--out", out];
        args.extend_from_slice(extra);
        self.ok(&args).trim().to_owned()
    }

    pub fn keys_json(&self, email: &str) -> Vec<Value> {
        let out = self.ok(&["keys", "list", email, "--json"]);
        serde_json::from_str::<Value>(&out)
            .expect("keys list --json is JSON")
            .as_array()
            .expect("an array")
            .clone()
    }
}

pub const EMAIL: &str = "bookstore-client@my-project.iam.gserviceaccount.com";
