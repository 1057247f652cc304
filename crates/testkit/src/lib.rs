//! Test support shared by esprit's crates (a dev-dependency only): one way to start each server
//! on `127.0.0.1:0` ([`servers`]), one runner for the workspace's binaries ([`cli`]), headless
//! Chromium over WebDriver ([`browser`]), the proxies' access log ([`access_log`]), where the
//! repository is, and the Python interpreter of the interop tests.
//!
//! testkit depends on the crates whose servers it starts, and they dev-depend on it: Cargo
//! allows that cycle for integration tests (`tests/*.rs`), which link the same library testkit
//! does. A crate's own `#[cfg(test)]` unit tests would see two copies of the crate, so they do
//! not use testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod access_log;
pub mod browser;
pub mod cli;
pub mod mirror;
pub mod otlp;
pub mod relay;
pub mod servers;
pub mod stores;
pub mod tokens;

pub use servers::{
    BOOKSTORE_CONFIG, DeadAddr, ECHO_CONFIG, HttpReply, KeyServer, RunningProxy, answers_get,
    assert_closes_silent_and_partial_preface, bookstore_config, bookstore_service, bookstore_stack,
    connect_from, dead_addr, echo_config, echo_service, echo_stack, free_port, h2c, http_get,
    http1, listener, peer_closes, post_form, serve_router, settings, settings_with_admin,
    start_bookstore, start_bookstore_on, start_echo, wait_for_status,
};
pub use stores::{
    Backend, PgDatabase, PgTlsDatabase, PgTlsServer, TestStore, postgres_server,
    postgres_tls_server,
};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root, from the running test's package directory (every workspace member is
/// two levels down). Read at run time, where cargo and nextest set it: a path compiled in with
/// `env!` goes stale when one build cache serves clones in different folders (cargo does not
/// rebuild for a moved workspace), and the tests then read a deleted clone's files.
pub fn repo_root() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
}

/// Writes `text` over `path` as a deployer does: to a temporary file beside it, then renamed
/// over it (readers see the old file or the new one, never half of it).
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
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

/// The `node_modules` that `scripts/node-env.sh` installs from `tests/node/package-lock.json`
/// (@connectrpc/connect-node…, on first use) and prints. Panics, failing the test, when Node or
/// the packages cannot be had: interop tests are never skipped.
pub fn node_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES
        .get_or_init(|| {
            let script = repo_root().join("scripts/node-env.sh");
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

/// Runs `tests/node/<script>` with `node`, its packages from [`node_modules`] (blocking; call
/// from `spawn_blocking` in async tests).
pub fn run_node(script: &str, args: &[&str]) -> Output {
    let path = repo_root().join("tests/node").join(script);
    Command::new("node")
        .env("NODE_PATH", node_modules())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running node {}: {err}", path.display()))
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

/// One sample of a metrics page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A metrics page as Prometheus' Python client parses it (`prometheus_client.parser`), so a
/// page the real parser refuses fails the test.
#[derive(Debug, Clone)]
pub struct MetricsPage {
    /// Family name → type (`counter`, `gauge`, `histogram`…).
    pub families: std::collections::BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl MetricsPage {
    /// Blocking (runs Python): call from `spawn_blocking` in async tests.
    pub fn parse(text: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("esprit-metrics-{}-{n}.txt", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let out = run_python("parse_metrics.py", &[path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert_success("parsing the metrics page with prometheus_client", &out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let families = json["families"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let samples = json["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap().to_owned(),
                labels: s["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect();
        Self { families, samples }
    }

    /// The value of sample `name` whose labels include all of `labels`, summed over the
    /// matching series (0 when none matches).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// How many series of `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|s| s.name == name).count()
    }
}
