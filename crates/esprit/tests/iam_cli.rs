//! `esprit iam …` run as a process on temporary stores: every command, every error a user can
//! make, the key file's fields and mode, and `iam serve` as a process.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::cli::{self, Listening};

use serde_json::Value;

struct Cli {
    dir: tempfile::TempDir,
    store: PathBuf,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

fn command() -> Command {
    cli::command(ESPRIT)
}

/// `HOST:PORT` of a running `iam serve`, from the URL it printed.
fn http_addr(server: &Listening) -> String {
    let url = &server.addr;
    url.strip_prefix("http://")
        .unwrap_or_else(|| panic!("first line {url:?}"))
        .to_owned()
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("iam.db");
        Cli { dir, store }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `esprit iam ARGS --store STORE`.
    fn run(&self, args: &[&str]) -> Output {
        command()
            .arg("iam")
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .output()
            .expect("run esprit")
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "esprit iam {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs and asserts exit code `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        cli::assert_fails(&format!("esprit iam {args:?}"), &self.run(args), code)
    }

    fn account(&self, name: &str) -> String {
        self.ok(&["accounts", "create", name, "--project", "my-project"])
            .trim()
            .to_owned()
    }

    fn key(&self, email: &str, out: &Path, extra: &[&str]) -> String {
        let out = out.to_str().expect("utf-8 path");
        let mut args = vec!["keys", "create", email, "--out", out];
        args.extend_from_slice(extra);
        self.ok(&args).trim().to_owned()
    }

    fn keys_json(&self, email: &str) -> Vec<Value> {
        let out = self.ok(&["keys", "list", email, "--json"]);
        serde_json::from_str::<Value>(&out)
            .expect("keys list --json is JSON")
            .as_array()
            .expect("an array")
            .clone()
    }
}

const EMAIL: &str = "bookstore-client@my-project.iam.gserviceaccount.com";
const NOBODY: &str = "nobody-here@my-project.iam.gserviceaccount.com";

#[test]
fn accounts_create_list_and_errors() {
    let cli = Cli::new();
    assert_eq!(cli.account("bookstore-client"), EMAIL);
    cli.account("another-client");

    let table = cli.ok(&["accounts", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("EMAIL"), "{table}");
    assert!(lines[1].starts_with("another-client@my-project.iam.gserviceaccount.com"));
    assert!(lines[2].starts_with(EMAIL));
    assert!(lines[2].contains("my-project"));

    let list: Value = serde_json::from_str(&cli.ok(&["accounts", "list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let account = &list[1];
    assert_eq!(account["email"], EMAIL);
    assert_eq!(account["account_id"], "bookstore-client");
    assert_eq!(account["project_id"], "my-project");
    let unique_id = account["unique_id"].as_str().unwrap();
    assert_eq!(unique_id.len(), 21);
    assert!(unique_id.bytes().all(|b| b.is_ascii_digit()));

    let err = cli.fails(
        &[
            "accounts",
            "create",
            "bookstore-client",
            "--project",
            "my-project",
        ],
        1,
    );
    assert_eq!(
        err.trim(),
        format!("esprit: service account {EMAIL} already exists")
    );
    let err = cli.fails(
        &["accounts", "create", "Bookstore", "--project", "my-project"],
        1,
    );
    assert!(
        err.contains(
            "invalid service account id \"Bookstore\": must start with a lowercase letter"
        ),
        "{err}"
    );
    let err = cli.fails(
        &["accounts", "create", "short", "--project", "my-project"],
        1,
    );
    assert!(err.contains("must be 6 to 30 characters long"), "{err}");
    let err = cli.fails(
        &["accounts", "create", "trailing-", "--project", "my-project"],
        1,
    );
    assert!(err.contains("must not end with a hyphen"), "{err}");
    let err = cli.fails(
        &["accounts", "create", "good-name", "--project", "My_Project"],
        1,
    );
    assert!(err.contains("invalid project id \"My_Project\""), "{err}");
    let err = cli.fails(&["accounts", "create", "good-name"], 2);
    assert!(err.contains("--project"), "{err}");
    // Nothing was added by the failures.
    assert_eq!(cli.ok(&["accounts", "list"]).lines().count(), 3);
}

#[test]
fn keys_create_writes_a_google_key_file_0600() {
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let out = cli.path("key.json");
    let key_id = cli.key(&email, &out, &[]);
    assert_eq!(key_id.len(), 40);
    assert!(
        key_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let fields: Vec<&str> = file
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
        "universe_domain",
    ];
    let mut got = fields.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["project_id"], "my-project");
    assert_eq!(file["private_key_id"], key_id.as_str());
    assert!(
        file["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    assert_eq!(file["client_email"], EMAIL);
    let accounts: Value = serde_json::from_str(&cli.ok(&["accounts", "list", "--json"])).unwrap();
    assert_eq!(file["client_id"], accounts[0]["unique_id"]);
    assert_eq!(
        file["auth_uri"],
        "https://accounts.google.com/o/oauth2/auth"
    );
    assert_eq!(file["token_uri"], "https://oauth2.googleapis.com/token");
    assert_eq!(
        file["auth_provider_x509_cert_url"],
        "https://www.googleapis.com/oauth2/v1/certs"
    );
    assert_eq!(
        file["client_x509_cert_url"],
        "http://127.0.0.1:8085/robot/v1/metadata/x509/\
         bookstore-client%40my-project.iam.gserviceaccount.com"
    );
    assert_eq!(file["universe_domain"], "googleapis.com");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    // The private key is in the file and nowhere in the store.
    let store = std::fs::read(&cli.store).unwrap();
    let needle = b"PRIVATE KEY";
    assert!(!store.windows(needle.len()).any(|w| w == needle));

    // ES256 (any case), and a configured key server URL (trailing slash dropped).
    let ec = cli.path("ec.json");
    let ec_id = cli.key(
        &email,
        &ec,
        &[
            "--algorithm",
            "es256",
            "--issuer-base-url",
            "https://keys.example.com:8443/",
        ],
    );
    let ec_file: Value = serde_json::from_str(&std::fs::read_to_string(&ec).unwrap()).unwrap();
    assert_eq!(ec_file["private_key_id"], ec_id.as_str());
    assert_eq!(
        ec_file["client_x509_cert_url"],
        "https://keys.example.com:8443/robot/v1/metadata/x509/\
         bookstore-client%40my-project.iam.gserviceaccount.com"
    );
    assert_ne!(ec_file["private_key"], file["private_key"]);
    let listed = cli.keys_json(&email);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["key_id"], key_id.as_str());
    assert_eq!(listed[0]["algorithm"], "RS256");
    assert_eq!(listed[1]["key_id"], ec_id.as_str());
    assert_eq!(listed[1]["algorithm"], "ES256");

    // The base URL from the environment.
    let env_out = cli.path("env.json");
    let out = command()
        .args(["iam", "keys", "create", &email, "--out"])
        .arg(&env_out)
        .arg("--store")
        .arg(&cli.store)
        .env("ESPRIT_IAM_BASE_URL", "http://127.0.0.2:9")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let env_file: Value =
        serde_json::from_str(&std::fs::read_to_string(&env_out).unwrap()).unwrap();
    assert!(
        env_file["client_x509_cert_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.2:9/robot/v1/metadata/x509/")
    );
}

#[test]
fn keys_create_errors_change_nothing() {
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let out = cli.path("key.json");
    std::fs::write(&out, "precious").unwrap();
    let out_str = out.to_str().unwrap();

    let err = cli.fails(&["keys", "create", &email, "--out", out_str], 1);
    assert!(
        err.contains("already exists; refusing to overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");

    let missing = cli.path("no/such/dir/key.json");
    let err = cli.fails(
        &["keys", "create", &email, "--out", missing.to_str().unwrap()],
        1,
    );
    assert!(err.contains("cannot write key file"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");

    let fresh = cli.path("fresh.json");
    let fresh_str = fresh.to_str().unwrap();
    let err = cli.fails(&["keys", "create", NOBODY, "--out", fresh_str], 1);
    assert_eq!(
        err.trim(),
        format!("esprit: service account {NOBODY} does not exist")
    );
    assert!(!fresh.exists());

    let err = cli.fails(
        &[
            "keys",
            "create",
            &email,
            "--out",
            fresh_str,
            "--algorithm",
            "HS256",
        ],
        2,
    );
    assert!(err.contains("RS256") && err.contains("ES256"), "{err}");
    let err = cli.fails(
        &[
            "keys",
            "create",
            &email,
            "--out",
            fresh_str,
            "--issuer-base-url",
            "ftp://x",
        ],
        2,
    );
    assert!(err.contains("must start with http:// or https://"), "{err}");
    assert!(!fresh.exists());
    assert!(cli.keys_json(&email).is_empty());
}

#[test]
fn keys_list_disable_enable_delete() {
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let k1 = cli.key(&email, &cli.path("k1.json"), &[]);
    let k2 = cli.key(&email, &cli.path("k2.json"), &["--algorithm", "ES256"]);

    let table = cli.ok(&["keys", "list", &email]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("KEY_ID"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&k1) && l.contains("RS256") && l.contains("ENABLED"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&k2) && l.contains("ES256"))
    );

    let state = |id: &str| -> String {
        cli.keys_json(&email)
            .iter()
            .find(|k| k["key_id"] == id)
            .map(|k| k["state"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "ABSENT".into())
    };
    let out = cli.run(&["keys", "disable", &email, &k1]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains(&format!("disabled key {k1}")));
    assert_eq!(state(&k1), "DISABLED");
    assert_eq!(state(&k2), "ENABLED");
    cli.ok(&["keys", "enable", &email, &k1]);
    assert_eq!(state(&k1), "ENABLED");
    cli.ok(&["keys", "delete", &email, &k1]);
    assert_eq!(state(&k1), "ABSENT");
    assert_eq!(cli.keys_json(&email).len(), 1);

    for verb in ["disable", "enable", "delete"] {
        let err = cli.fails(&["keys", verb, &email, &k1], 1);
        assert_eq!(
            err.trim(),
            format!("esprit: service account {email} has no key {k1}")
        );
        let err = cli.fails(&["keys", verb, NOBODY, &k2], 1);
        assert!(err.contains("does not exist"), "{err}");
    }
    let err = cli.fails(&["keys", "list", NOBODY], 1);
    assert_eq!(
        err.trim(),
        format!("esprit: service account {NOBODY} does not exist")
    );
    let err = cli.fails(&["keys", "disable", &email], 2);
    assert!(err.contains("KEY_ID"), "{err}");
}

#[test]
fn the_store_comes_from_the_flag_the_environment_or_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let env_store = dir.path().join("from-env.db");
    let out = command()
        .args([
            "iam",
            "accounts",
            "create",
            "env-account",
            "--project",
            "my-project",
        ])
        .env("ESPRIT_IAM_STORE", &env_store)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env_store.exists());
    assert!(!dir.path().join("esprit-iam.db").exists());

    let out = command()
        .args([
            "iam",
            "accounts",
            "create",
            "cwd-account",
            "--project",
            "my-project",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("esprit-iam.db").exists());
    let list = command()
        .args(["iam", "accounts", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let list = text(&list.stdout);
    assert!(
        list.contains("cwd-account@") && !list.contains("env-account@"),
        "{list}"
    );

    // A file that is not a store is a clear error.
    let bogus = dir.path().join("bogus.db");
    std::fs::write(&bogus, vec![7u8; 4096]).unwrap();
    let out = command()
        .args(["iam", "accounts", "list", "--store"])
        .arg(&bogus)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("IAM store"),
        "{}",
        text(&out.stderr)
    );
}

/// A GET over a fresh connection; returns (status line, headers, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to iam serve");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[test]
fn iam_serve_runs_as_a_process_and_stops_on_sigterm() {
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let k1 = cli.key(&email, &cli.path("k1.json"), &[]);
    let mut server = cli::iam_serve(ESPRIT, &cli.store, &[]);
    server.discard_output();
    let addr = http_addr(&server);

    let jwk_path = format!("/service_accounts/v1/jwk/{}", email.replace('@', "%40"));
    let (status, headers, body) = http_get(&addr, &jwk_path);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("cache-control: public, max-age=300"),
        "{headers}"
    );
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], k1.as_str());

    // A key made by the CLI while the server runs is served at the next request.
    let k2 = cli.key(&email, &cli.path("k2.json"), &[]);
    let (_, _, body) = http_get(&addr, &format!("/robot/v1/metadata/x509/{email}"));
    let map: Value = serde_json::from_str(&body).unwrap();
    assert!(map.get(&k1).is_some() && map.get(&k2).is_some(), "{body}");
    cli.ok(&["keys", "disable", &email, &k1]);
    let (_, _, body) = http_get(&addr, &jwk_path);
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], k2.as_str());

    let (status, _, body) = http_get(&addr, "/service_accounts/v1/jwk/nobody-here%40x.com");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("\"NOT_FOUND\""), "{body}");

    let (status, _) = server.sigterm_and_wait();
    assert!(status.success(), "iam serve exited with {status}");
}

/// Issue 12 item 4: `iam serve --tls-cert/--tls-key` prints `https://ADDR` and serves the key
/// documents over TLS to a client that trusts the private CA; one that does not is refused.
// Multi-threaded: the clients' connection tasks must run (and close) while the test thread
// blocks on the server's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_serve_speaks_tls_with_a_certificate() {
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let kid = cli.key(&email, &cli.path("k1.json"), &[]);
    let pki = keysets::test_server::TestPki::generate().unwrap();
    let (ca, cert, key) = (
        cli.path("ca.pem"),
        cli.path("cert.pem"),
        cli.path("key.pem"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.server_cert_pem).unwrap();
    std::fs::write(&key, &pki.server_key_pem).unwrap();
    let mut server = cli::iam_serve(
        ESPRIT,
        &cli.store,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    server.discard_output();
    let base = server.addr.clone();
    assert!(
        base.starts_with("https://127.0.0.1:"),
        "first line {base:?}"
    );
    let url = format!("{base}/robot/v1/metadata/x509/{email}");

    let trusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_merge(keysets::extra_roots(&ca).unwrap())
        .build()
        .unwrap();
    let response = trusting.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let map: Value = response.json().await.unwrap();
    assert!(
        map[&kid]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{map}"
    );

    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    // Plain HTTP on the TLS port gets no key document.
    let plain = url.replacen("https://", "http://", 1);
    let answered = untrusting.get(&plain).send().await;
    assert!(
        answered.as_ref().map_or(true, |r| r.status() != 200),
        "{answered:?}"
    );

    drop((trusting, untrusting));
    let (status, _) = server.sigterm_and_wait();
    assert!(status.success(), "iam serve exited with {status}");
}

/// Issue 9 item 17: the CLI creates the store and its WAL/SHM files 0600, and warns (naming
/// the path and mode) on every open of a store others may write, `iam serve` included.
#[cfg(unix)]
#[test]
fn the_store_is_private_and_a_writable_store_is_reported() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let cli = Cli::new();
    let email = cli.account("bookstore-client");
    let wal = cli.path("iam.db-wal");
    let shm = cli.path("iam.db-shm");
    // The CLI checkpoints and removes the WAL when its last connection closes; a second open
    // connection (here, a reader kept open) keeps them, as a running `iam serve` does.
    let reader = iam::Store::open(&cli.store).unwrap();
    cli.key(&email, &cli.path("k1.json"), &[]);
    for file in [&cli.store, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop(reader);
    let out = cli.run(&["accounts", "list"]);
    assert!(out.status.success());
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    std::fs::set_permissions(&cli.store, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = cli.run(&["accounts", "list"]);
    assert!(out.status.success(), "reported, not refused");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "esprit: warning: IAM store file {} has mode 0666",
            cli.store.display()
        )),
        "{stderr}"
    );

    let server = cli::iam_serve(ESPRIT, &cli.store, &[]);
    let addr = http_addr(&server);
    // An answer means the store is open (it is opened before the first accept).
    let (status, _, _) = http_get(&addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (_, logs) = server.sigterm_and_wait();
    assert!(
        logs.contains(&cli.store.display().to_string()) && logs.contains("0666"),
        "{logs}"
    );
}

const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";
const SA_USER: &str = "roles/iam.serviceAccountUser";

impl Cli {
    fn roles_json(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["roles", "list", "--json"];
        args.extend_from_slice(filters);
        let out = self.ok(&args);
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

#[test]
fn roles_grant_list_revoke() {
    let cli = Cli::new();
    let caller = cli.account("caller-one");
    let target = cli.account("target-one");
    let member = format!("serviceAccount:{caller}");
    let resource = format!("projects/-/serviceAccounts/{target}");

    let granted = cli.run(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &resource,
    ]);
    assert!(granted.status.success(), "{}", text(&granted.stderr));
    assert_eq!(
        text(&granted.stderr).trim(),
        format!("granted {TOKEN_CREATOR} on {resource} to {member}")
    );
    // Again (with the bare email as resource): succeeds, one binding.
    let again = cli.run(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &target,
    ]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("already holds"),
        "{}",
        text(&again.stderr)
    );
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &member,
        "--role",
        SA_USER,
        "--resource",
        &target,
    ]);
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &format!("serviceAccount:{target}"),
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &caller,
    ]);

    let all = cli.roles_json(&[]);
    assert_eq!(all.len(), 3, "{all:?}");
    let on_target = cli.roles_json(&["--resource", &resource]);
    assert_eq!(on_target.len(), 2);
    assert_eq!(on_target[0]["member"], member.as_str());
    assert_eq!(on_target[0]["role"], TOKEN_CREATOR);
    assert_eq!(on_target[0]["resource"], resource.as_str());
    assert!(on_target[0]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(on_target[1]["role"], SA_USER);
    assert_eq!(cli.roles_json(&["--resource", &target]).len(), 2);
    assert_eq!(cli.roles_json(&["--role", SA_USER]).len(), 1);
    assert_eq!(cli.roles_json(&["--member", &member]).len(), 2);
    let table = cli.ok(&["roles", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("RESOURCE"), "{table}");

    cli.ok(&[
        "roles",
        "revoke",
        "--member",
        &member,
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &resource,
    ]);
    assert_eq!(cli.roles_json(&["--resource", &resource]).len(), 1);
    // Revoking what is not granted is an error, as gcloud's remove-iam-policy-binding.
    let err = cli.fails(
        &[
            "roles",
            "revoke",
            "--member",
            &member,
            "--role",
            TOKEN_CREATOR,
            "--resource",
            &resource,
        ],
        1,
    );
    assert_eq!(
        err.trim(),
        format!("esprit: {member} does not hold {TOKEN_CREATOR} on {resource}: nothing to revoke")
    );

    // Deleting an account deletes its bindings, as member and as resource.
    let third = cli.account("third-one");
    cli.ok(&[
        "roles",
        "grant",
        "--member",
        &format!("serviceAccount:{third}"),
        "--role",
        TOKEN_CREATOR,
        "--resource",
        &third,
    ]);
    assert_eq!(cli.roles_json(&[]).len(), 3);
    cli.ok(&["accounts", "delete", &caller]);
    let left = cli.roles_json(&[]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0]["member"],
        format!("serviceAccount:{third}").as_str()
    );
}

#[test]
fn roles_refuse_unknown_roles_members_and_resources() {
    let cli = Cli::new();
    let caller = cli.account("caller-one");
    let member = format!("serviceAccount:{caller}");
    let ghost = "ghost-account@my-project.iam.gserviceaccount.com";
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--member",
                &member,
                "--role",
                "roles/owner",
                "--resource",
                &caller,
            ],
            "esprit: unknown role \"roles/owner\": esprit knows roles/iam.serviceAccountTokenCreator and roles/iam.serviceAccountUser",
        ),
        (
            &[
                "--member",
                &caller,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "expected serviceAccount:EMAIL",
        ),
        (
            &[
                "--member",
                "user:alice@example.com",
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "members of kind \"user\" are not supported",
        ),
        (
            &[
                "--member",
                "serviceAccount:alice@example.com",
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "esprit: invalid member \"serviceAccount:alice@example.com\"",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                "projects/my-project/serviceAccounts/x",
            ],
            "esprit: invalid resource",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                "bucket/x",
            ],
            "esprit: invalid resource \"bucket/x\"",
        ),
        (
            &[
                "--member",
                &format!("serviceAccount:{ghost}"),
                "--role",
                TOKEN_CREATOR,
                "--resource",
                &caller,
            ],
            "does not exist",
        ),
        (
            &[
                "--member",
                &member,
                "--role",
                TOKEN_CREATOR,
                "--resource",
                ghost,
            ],
            "does not exist",
        ),
    ];
    for (flags, want) in cases {
        for verb in ["grant", "revoke"] {
            let mut args = vec!["roles", verb];
            args.extend_from_slice(flags);
            let err = cli.fails(&args, 1);
            assert!(err.contains(want), "{args:?}: {err}");
            if want.contains("does not exist") {
                assert!(err.contains(ghost), "{args:?}: {err}");
            }
        }
    }
    assert!(cli.roles_json(&[]).is_empty());
    let err = cli.fails(&["roles", "list", "--role", "roles/editor"], 1);
    assert!(err.contains("unknown role"), "{err}");
    let err = cli.fails(&["roles", "grant", "--member", &member], 2);
    assert!(err.contains("--role"), "{err}");
}
