//! `esprit iam …` run as a process on temporary stores: every command (roles in
//! `iam_roles_cli.rs`), every error a user can make, the key file's fields and mode, and
//! `iam serve` as a process.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;

use common::{Cli, EMAIL, ESPRIT, command, text};
use serde_json::Value;
use testkit::cli::{self, Listening};

/// `HOST:PORT` of a running `iam serve`, from the URL it printed.
fn http_addr(server: &Listening) -> String {
    let url = &server.addr;
    url.strip_prefix("http://")
        .unwrap_or_else(|| panic!("first line {url:?}"))
        .to_owned()
}

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
