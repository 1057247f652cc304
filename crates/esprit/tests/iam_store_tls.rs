//! TLS to a PostgreSQL store, through the real `esprit` binary, against a server of its own
//! (testkit's `postgres_tls_server()`: 127.0.0.1, `ssl=on`, a certificate for `localhost` and
//! 127.0.0.1 from a private CA, TLS and a password required): libpq's `sslmode` values
//! `verify-full`, `verify-ca`, `require`, the default and `disable`, with `sslrootcert`. The
//! password never appears in any message.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Output;

use testkit::{PgTlsDatabase, TestStore, cli, postgres_tls_server};

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");

/// `esprit iam ARGS --store URL`.
fn iam(url: &str, args: &[&str]) -> Output {
    cli::output(
        cli::command(ESPRIT)
            .arg("iam")
            .args(args)
            .arg("--store")
            .arg(url),
    )
}

fn ok(url: &str, args: &[&str]) -> String {
    let out = iam(url, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "iam {args:?} --store {url} failed ({}): {stderr}",
        out.status
    );
    assert_no_password(&stderr);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The error of a command that must fail, checked to name the store without its password.
fn refused(url: &str, args: &[&str]) -> String {
    let err = cli::assert_fails(&format!("iam {args:?} --store {url}"), &iam(url, args), 1);
    assert_no_password(&err);
    err
}

fn assert_no_password(text: &str) {
    let password = postgres_tls_server().password();
    assert!(!text.contains(password), "the password is shown: {text}");
}

/// A temporary directory with the server's CA (`ca.pem`) and another CA (`other-ca.pem`).
struct Cas {
    dir: tempfile::TempDir,
}

impl Cas {
    fn new() -> Cas {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), postgres_tls_server().ca_pem()).unwrap();
        let other = keysets::test_server::TestPki::generate().unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.ca_pem).unwrap();
        Cas { dir }
    }

    fn right(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn wrong(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }
}

fn params(mode: &str, root: Option<&Path>) -> String {
    match root {
        Some(root) => format!("sslmode={mode}&sslrootcert={}", root.display()),
        None => format!("sslmode={mode}"),
    }
}

/// A store created and migrated, an account written and read back.
fn round_trip(url: &str, account: &str) {
    let migrated = ok(url, &["migrate"]);
    assert!(!migrated.is_empty());
    let email = ok(
        url,
        &["accounts", "create", account, "--project", "my-project"],
    );
    assert!(email.starts_with(account), "{email}");
    assert!(ok(url, &["accounts", "list"]).contains(&email));
}

fn database() -> PgTlsDatabase {
    postgres_tls_server().create_database()
}

/// `verify-full` with the server's CA in `sslrootcert`, by host name and by IP address (both in
/// the certificate): the store is created and migrated and an account round-trips. The server
/// takes TCP connections over TLS only, so this is TLS.
#[test]
fn verify_full_with_the_right_ca_works() {
    let cas = Cas::new();
    let db = database();
    round_trip(
        &db.url("localhost", &params("verify-full", Some(&cas.right()))),
        "by-name",
    );
    round_trip(
        &db.url("127.0.0.1", &params("verify-full", Some(&cas.right()))),
        "by-address",
    );
}

/// A server certificate from another CA is refused under `verify-full` and `verify-ca`, and
/// under `require` when `sslrootcert` is given (libpq then checks the chain); without
/// `sslrootcert`, `verify-full` checks against the system's roots, which do not hold the test CA.
#[test]
fn a_certificate_from_another_ca_is_refused() {
    let cas = Cas::new();
    let db = database();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = db.url("localhost", &params(mode, Some(&cas.wrong())));
        let err = refused(&url, &["accounts", "list"]);
        assert!(
            err.contains("cannot connect to the IAM store postgres://esprit_tls:***@localhost:"),
            "{mode}: {err}"
        );
        // Both CAs are "esprit test CA": the issuer is found, its signature does not match.
        assert!(
            err.contains("error performing TLS handshake: invalid peer certificate"),
            "{mode}: {err}"
        );
    }
    let err = refused(
        &db.url("localhost", "sslmode=verify-full"),
        &["accounts", "list"],
    );
    assert!(
        err.contains("UnknownIssuer") || err.contains("no system root certificates"),
        "{err}"
    );
}

/// A certificate for other names: `verify-full` refuses it, `verify-ca` (the chain only)
/// accepts it. The connection goes to 127.0.0.1 (`hostaddr`) while TLS checks `db.example`.
#[test]
fn a_wrong_host_name_is_refused_by_verify_full_and_accepted_by_verify_ca() {
    let cas = Cas::new();
    let db = database();
    let url = |mode| {
        db.url(
            "db.example",
            &format!("hostaddr=127.0.0.1&{}", params(mode, Some(&cas.right()))),
        )
    };
    let err = refused(&url("verify-full"), &["accounts", "list"]);
    assert!(
        err.contains("cannot connect to the IAM store postgres://esprit_tls:***@db.example:"),
        "{err}"
    );
    assert!(err.contains("not valid for name"), "{err}");
    round_trip(&url("verify-ca"), "chain-only");
}

/// `require` encrypts without checking the certificate; the default (libpq's `prefer`) to a
/// loopback address uses TLS when the server offers it.
#[test]
fn require_and_the_default_work_without_a_ca() {
    let db = database();
    round_trip(&db.url("localhost", "sslmode=require"), "required");
    round_trip(&db.url("127.0.0.1", ""), "by-default");
    assert!(
        ok(
            &db.url("127.0.0.1", "sslmode=prefer"),
            &["accounts", "list"]
        )
        .contains("by-default")
    );
}

/// `sslmode=disable` talks in clear, which this server refuses (`hostssl` only): the server's
/// reason is shown, the password is not.
#[test]
fn disable_against_a_tls_only_server_is_refused_by_the_server() {
    let db = database();
    let err = refused(
        &db.url("127.0.0.1", "sslmode=disable"),
        &["accounts", "list"],
    );
    assert!(
        err.contains("cannot connect to the IAM store postgres://esprit_tls:***@127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
        "{err}"
    );
}

/// TLS settings that cannot work are refused before connecting (no server is needed: port 1
/// answers nothing), naming the problem and not the password: a missing `sslrootcert`, one
/// without a certificate, an unknown `sslmode`.
#[test]
fn unusable_tls_settings_are_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let url = |params: &str| format!("postgres://esprit:s3cret@localhost:1/iam?{params}");
    let refused = |url: &str| {
        let err = cli::assert_fails(url, &iam(url, &["accounts", "list"]), 1);
        assert!(!err.contains("s3cret"), "{err}");
        err
    };
    let missing = dir.path().join("missing.pem");
    let err = refused(&url(&params("verify-full", Some(&missing))));
    assert!(
        err.contains(&format!(
            "IAM store TLS: cannot read sslrootcert {}",
            missing.display()
        )),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = refused(&url(&params("verify-ca", Some(&empty))));
    assert!(
        err.contains(&format!(
            "IAM store TLS: sslrootcert {} holds no usable PEM certificate",
            empty.display()
        )),
        "{err}"
    );
    let err = refused(&url("sslmode=always"));
    assert!(
        err.contains(
            "invalid PostgreSQL store URL: sslmode=always: not one of disable, allow, prefer, \
             require, verify-ca, verify-full"
        ),
        "{err}"
    );
}

/// Over a Unix socket there is no TLS (PostgreSQL does not speak it there): any `sslmode`
/// connects in clear, as libpq does.
#[test]
fn unix_sockets_ignore_sslmode() {
    let ts = TestStore::postgres();
    for mode in ["require", "verify-full"] {
        let url = format!("{}&sslmode={mode}", ts.arg());
        let out = iam(&url, &["accounts", "list"]);
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
