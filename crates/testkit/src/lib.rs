//! Test support shared by esprit's crates (dev-dependency only): where the repository is, and the
//! Python interpreter of the interop tests. Deliberately no servers or fixtures of one crate here:
//! those live with the crate they exercise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
