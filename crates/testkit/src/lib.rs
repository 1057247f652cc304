//! Test support shared by esprit's crates (a dev-dependency only): one way to start each server
//! on `127.0.0.1:0` ([`servers`]), one runner for the workspace's binaries ([`cli`]), where the
//! repository is, and the Python interpreter of the interop tests.
//!
//! testkit depends on the crates whose servers it starts, and they dev-depend on it: Cargo
//! allows that cycle for integration tests (`tests/*.rs`), which link the same library testkit
//! does. A crate's own `#[cfg(test)]` unit tests would see two copies of the crate, so they do
//! not use testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod servers;
pub mod tokens;

pub use servers::{
    BOOKSTORE_CONFIG, ECHO_CONFIG, HttpReply, KeyServer, RunningProxy, answers_get,
    assert_closes_silent_and_partial_preface, bookstore_config, bookstore_service, bookstore_stack,
    connect_from, dead_addr, echo_config, echo_service, echo_stack, h2c, http1, listener,
    peer_closes, post_form, serve_router, settings, start_bookstore, start_bookstore_on,
    start_echo,
};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$ESPRIT_PY`, else the venv python that `scripts/python-env.sh` prepares (installing grpcio,
/// google-auth, PyJWT… on first use) and prints. Panics, failing the test, when Python or the
/// packages cannot be had: interop tests are never skipped.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(python) = std::env::var_os("ESPRIT_PY") {
                return PathBuf::from(python);
            }
            let script = repo_root().join("scripts/python-env.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
            assert!(
                out.status.success(),
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            PathBuf::from(stdout.lines().last().unwrap().trim())
        })
        .clone()
}

/// Runs `tests/python/<script>` with the interop python (blocking; call from `spawn_blocking`
/// in async tests).
pub fn run_python(script: &str, args: &[&str]) -> Output {
    let path = repo_root().join("tests/python").join(script);
    Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", path.display()))
}

/// Fails the test with the script's output unless it exited 0.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
