//! `esprit iam api-keys …` run as a process on temporary stores: what each command prints (the
//! key only at creation), the errors a user can make, and `iam serve` answering checks for keys
//! created and revoked by the CLI while it runs, without ever logging a key.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Output};

use testkit::cli;

use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

fn command() -> Command {
    cli::command(ESPRIT)
}

struct Cli {
    dir: tempfile::TempDir,
    store: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        Cli { dir, store }
    }

    /// `esprit iam api-keys ARGS --store STORE`.
    fn run(&self, args: &[&str]) -> Output {
        command()
            .args(["iam", "api-keys"])
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "api-keys {args:?} failed: {}",
            text(&out.stderr)
        );
        (text(&out.stdout), text(&out.stderr))
    }

    /// Runs and asserts exit code `code` with nothing on stdout; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        cli::assert_fails(&format!("api-keys {args:?}"), &self.run(args), code)
    }

    /// `create` and the key it printed.
    fn create(&self, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let (stdout, _) = self.ok(&all);
        stdout.trim_end_matches('\n').to_owned()
    }

    fn list_json(&self, args: &[&str]) -> (String, Vec<Value>) {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        let (stdout, _) = self.ok(&all);
        let list = serde_json::from_str::<Value>(&stdout).unwrap();
        (stdout, list.as_array().unwrap().clone())
    }

    /// Every byte of the store's files (database, WAL, shared memory).
    fn store_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
}

fn is_api_key(key: &str) -> bool {
    key.len() == 39
        && key.starts_with("AIza")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn create_prints_the_key_alone_and_list_never_shows_it() {
    let cli = Cli::new();
    let out = cli.run(&["create", "--project", "my-project"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Exactly the key and a newline.
    let key = stdout.strip_suffix('\n').unwrap();
    assert!(is_api_key(key), "{stdout:?}");
    assert!(!key.contains('\n'));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("for project my-project"), "{stderr}");
    assert!(!stderr.contains(key), "{stderr}");

    let named = cli.create(&["--project", "my-project", "--name", "web client"]);
    assert!(is_api_key(&named));
    assert_ne!(named, key);

    let (stdout, _) = cli.ok(&["create", "--project", "other-project", "--json"]);
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let mut fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["created", "id", "key", "name", "project"]);
    let other = created["key"].as_str().unwrap().to_owned();
    assert!(is_api_key(&other));
    assert_eq!(created["project"], "other-project");
    assert_eq!(created["name"], Value::Null);
    assert_eq!(created["id"].as_str().unwrap().len(), 36);
    let stamp = created["created"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");

    // JSON list: id, project, name, prefix, created, revoked; never a key.
    let (raw, list) = cli.list_json(&[]);
    assert_eq!(list.len(), 3);
    for k in [key, &named, &other] {
        assert!(!raw.contains(k), "list --json shows a key: {raw}");
    }
    let first = &list[0];
    let mut fields: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["created", "id", "name", "prefix", "project", "revoked"]
    );
    assert_eq!(first["prefix"], &key[..8]);
    assert_eq!(first["project"], "my-project");
    assert_eq!(first["revoked"], false);
    assert_eq!(list[1]["name"], "web client");
    assert_eq!(list[1]["prefix"], &named[..8]);
    assert_eq!(list[2]["id"], created["id"]);

    let (_, mine) = cli.list_json(&["--project", "my-project"]);
    assert_eq!(mine.len(), 2);
    let (_, none) = cli.list_json(&["--project", "empty-project"]);
    assert!(none.is_empty());

    // The table: a header and a row per key, the prefix and "…", no key.
    let (table, _) = cli.ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(lines[1].contains(&format!("{}…", &key[..8])), "{table}");
    assert!(lines[2].ends_with("web client"), "{table}");
    for k in [key, &named, &other] {
        assert!(!table.contains(k), "list shows a key: {table}");
    }

    // Nor does the store file hold any key.
    let bytes = cli.store_bytes();
    for k in [key, &named, &other] {
        assert!(!bytes.windows(k.len()).any(|w| w == k.as_bytes()));
    }
}

#[test]
fn revoke_is_idempotent_and_errors_are_clear() {
    let cli = Cli::new();
    cli.create(&["--project", "my-project"]);
    let (_, list) = cli.list_json(&[]);
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let (stdout, stderr) = cli.ok(&["revoke", &id]);
    assert!(stdout.is_empty());
    assert_eq!(stderr.trim(), format!("revoked API key {id}"));
    let (_, list) = cli.list_json(&[]);
    assert_eq!(list[0]["revoked"], true);
    let (table, _) = cli.ok(&["list"]);
    assert!(table.contains("REVOKED"), "{table}");
    // Again: success, saying so.
    let (_, stderr) = cli.ok(&["revoke", &id]);
    assert!(
        stderr.starts_with(&format!("API key {id} was already revoked at ")),
        "{stderr}"
    );

    let unknown = "00000000-0000-4000-8000-000000000000";
    let err = cli.fails(&["revoke", unknown], 1);
    assert_eq!(
        err.trim(),
        format!(
            "esprit: API key {unknown} does not exist (see `esprit iam api-keys list` for the ids)"
        )
    );
    // The key instead of its id: refused, and the key is not echoed.
    let key = cli.create(&["--project", "my-project"]);
    let err = cli.fails(&["revoke", &key], 1);
    assert!(
        err.contains("that is an API key, not an API key id"),
        "{err}"
    );
    assert!(!err.contains(&key), "{err}");

    for bad in ["P", "my_project", "1project", "project-"] {
        let err = cli.fails(&["create", "--project", bad], 1);
        assert!(
            err.starts_with(&format!("esprit: invalid project id {bad:?}: ")),
            "{err}"
        );
        let err = cli.fails(&["list", "--project", bad], 1);
        assert!(err.contains("invalid project id"), "{err}");
    }
    let err = cli.fails(&["create", "--project", "my-project", "--name", ""], 1);
    assert!(err.contains("invalid API key name"), "{err}");
    let err = cli.fails(&["create"], 2);
    assert!(err.contains("--project"), "{err}");
    let err = cli.fails(&["revoke"], 2);
    assert!(err.contains("KEY_ID"), "{err}");
    // Nothing was made by the failed creates.
    let (_, list) = cli.list_json(&[]);
    assert_eq!(list.len(), 2);
}

/// A check over a fresh HTTP/1.1 connection; returns (status line, body as JSON).
fn check(addr: &str, key: &str) -> (String, Value) {
    check_for(addr, "bookstore.endpoints.my-project.cloud.goog", key)
}

/// A check for `service` (as written in the path, percent-encoded).
fn check_for(addr: &str, service: &str, key: &str) -> (String, Value) {
    let body = json!({ "api_key": key }).to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/services/{service}:check HTTP/1.1\r\n\
         Host: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{head}"
    );
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn iam_serve_checks_keys_the_cli_creates_and_revokes_while_it_runs() {
    let cli = Cli::new();
    let key = cli.create(&["--project", "my-project"]);
    let server = cli::iam_serve(ESPRIT, &cli.store, &["--log-format", "json"]);
    let addr = server.addr.strip_prefix("http://").unwrap().to_owned();

    let (_, list) = cli.list_json(&[]);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = check(&addr, &key);
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The contract's fields only: no key id for an anonymous caller.
    assert_eq!(
        body,
        json!({"valid": true, "consumer_project": "my-project"})
    );

    // Created by the CLI while serving: valid at the next request.
    let key2 = cli.create(&["--project", "other-project"]);
    let (_, body) = check(&addr, &key2);
    assert_eq!(body["valid"], true);
    assert_eq!(body["consumer_project"], "other-project");
    // Revoked by the CLI while serving: revoked at the next request.
    cli.ok(&["revoke", &id]);
    let (_, body) = check(&addr, &key);
    // Revoked and unknown look alike to the caller (the log tells them apart).
    assert_eq!(body, json!({"valid": false}));
    let unknown = "AIzaSyNotAKeyOfThisStore0000000000000000";
    let (_, body) = check(&addr, unknown);
    assert_eq!(body, json!({"valid": false}));

    let (status, logs) = server.sigterm_and_wait();
    assert!(status.success(), "iam serve exited with {status}: {logs}");

    // One log line per check, with key id, prefix and result; never a key.
    let checks: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "API key check")
        .collect();
    assert_eq!(checks.len(), 4, "{logs}");
    assert_eq!(checks[0]["key_id"], id.as_str());
    assert_eq!(checks[0]["key_prefix"], &key[..8]);
    assert_eq!(checks[0]["result"], "valid");
    assert_eq!(
        checks[0]["service"],
        "bookstore.endpoints.my-project.cloud.goog"
    );
    assert_eq!(checks[2]["result"], "revoked");
    assert_eq!(checks[3]["result"], "unknown");
    assert_eq!(checks[3]["key_id"], "-");
    for k in [key.as_str(), key2.as_str(), unknown] {
        assert!(!logs.contains(k), "a key in the logs: {logs}");
    }
}

/// Issue 9, item 16: a service name with an encoded line break, sent to the real binary with text
/// logs, produces one log line, not a forged second one; the answer has only the contract's
/// fields.
#[test]
fn client_text_cannot_forge_key_server_log_lines() {
    let cli = Cli::new();
    let key = cli.create(&["--project", "my-project"]);
    let server = cli::iam_serve(ESPRIT, &cli.store, &["--log-format", "text"]);
    let addr = server.addr.strip_prefix("http://").unwrap().to_owned();

    let forged = "svc%0A2026-01-01T00:00:00Z%20INFO%20FORGED%20admin%20login";
    let (status, body) = check_for(&addr, forged, &key);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        body,
        json!({"valid": true, "consumer_project": "my-project"})
    );
    let (_, body) = check_for(&addr, forged, "AIzaSyNotAKeyOfThisStore0000000000000000");
    assert_eq!(body, json!({"valid": false}));

    let (status, logs) = server.sigterm_and_wait();
    assert!(status.success(), "{logs}");
    let check_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("API key check"))
        .collect();
    assert_eq!(check_lines.len(), 2, "{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged log line: {logs}"
    );
    assert!(check_lines[0].contains("svc\\n2026"), "{logs}");
}
