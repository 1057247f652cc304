//! Issue 12 item 3 as a user runs it: `esprit iam` makes the proxy's account, its key file, an
//! API key and the role binding on `services/SERVICE`; `esprit iam serve --check-auth required`
//! and `esprit proxy --service-account-key FILE` run as processes; a real gRPC client calls
//! through. Also the roles CLI on services and the refusals at start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use echo::pb::EchoRequest;
use serde_json::Value;
use testkit::cli::{self, Listening};
use testkit::start_echo;

const ESPRIT: &str = env!("CARGO_BIN_EXE_esprit");
const SERVICE: &str = "echo.example.com";
const CONTROLLER: &str = "roles/servicemanagement.serviceController";
const TOKEN_CREATOR: &str = "roles/iam.serviceAccountTokenCreator";

/// Every method of the echo API needs an API key.
const CONFIG: &str = "\
type: google.api.Service
config_version: 3
name: echo.example.com
apis:
- name: esprit.echo.v1.Echo
";

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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        cli::command(ESPRIT)
            .arg("iam")
            .args(args)
            .arg("--store")
            .arg(&self.store)
            .output()
            .unwrap()
    }

    /// Runs and asserts success; (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        );
        assert!(out.status.success(), "esprit iam {args:?}: {stderr}");
        (stdout, stderr)
    }

    fn fails(&self, args: &[&str]) -> String {
        cli::assert_fails(&format!("esprit iam {args:?}"), &self.run(args), 1)
    }

    fn account_with_key(&self, name: &str, project: &str) -> (String, PathBuf) {
        let (email, _) = self.ok(&["accounts", "create", name, "--project", project]);
        let email = email.trim().to_owned();
        let key = self.path(&format!("{name}.json"));
        self.ok(&["keys", "create", &email, "--out", key.to_str().unwrap()]);
        (email, key)
    }

    fn roles(&self, verb: &str, member: &str, role: &str, resource: &str) -> Output {
        self.run(&[
            "roles",
            verb,
            "--member",
            member,
            "--role",
            role,
            "--resource",
            resource,
        ])
    }

    fn roles_json(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["roles", "list", "--json"];
        args.extend_from_slice(filters);
        let (stdout, _) = self.ok(&args);
        serde_json::from_str::<Value>(&stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn stderr_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn roles_on_services_grant_list_revoke_and_refusals() {
    let cli = Cli::new();
    let (proxy, _) = cli.account_with_key("esprit-proxy", "producer-project");
    let (other, _) = cli.account_with_key("other-client", "producer-project");
    let member = format!("serviceAccount:{proxy}");
    let resource = format!("services/{SERVICE}");

    let granted = stderr_of(&cli.roles("grant", &member, CONTROLLER, &resource));
    assert_eq!(
        granted.trim(),
        format!("granted {CONTROLLER} on {resource} to {member}")
    );
    let again = stderr_of(&cli.roles("grant", &member, CONTROLLER, &resource));
    assert!(again.contains("already holds"), "{again}");
    stderr_of(&cli.roles("grant", &member, TOKEN_CREATOR, &other));

    // Both kinds in one list; filters select a kind.
    let all = cli.roles_json(&[]);
    assert_eq!(all.len(), 2, "{all:?}");
    let service_bindings: Vec<&Value> = all
        .iter()
        .filter(|b| b["resource"] == resource.as_str())
        .collect();
    assert_eq!(service_bindings.len(), 1, "{all:?}");
    assert_eq!(service_bindings[0]["role"], CONTROLLER);
    assert_eq!(service_bindings[0]["member"], member.as_str());
    assert!(
        service_bindings[0]["created"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(cli.roles_json(&["--resource", &resource]).len(), 1);
    assert_eq!(cli.roles_json(&["--role", CONTROLLER]).len(), 1);
    assert_eq!(cli.roles_json(&["--role", TOKEN_CREATOR]).len(), 1);
    assert_eq!(cli.roles_json(&["--resource", &other]).len(), 1);
    assert_eq!(cli.roles_json(&["--member", &member]).len(), 2);
    assert!(
        cli.roles_json(&["--resource", "services/x.example.com"])
            .is_empty()
    );
    let (table, _) = cli.ok(&["roles", "list"]);
    assert!(
        table.contains(&resource) && table.contains(CONTROLLER),
        "{table}"
    );

    // Refusals, each before the store changes.
    let cases: &[(&str, &str, &str)] = &[
        (
            CONTROLLER,
            &other,
            "roles/servicemanagement.serviceController is granted on services/SERVICE, not on",
        ),
        (
            TOKEN_CREATOR,
            &resource,
            "roles/iam.serviceAccountTokenCreator is granted on projects/-/serviceAccounts/EMAIL",
        ),
        ("roles/servicemanagement.admin", &resource, "unknown role"),
        (CONTROLLER, "services/", "the service name is empty"),
        (CONTROLLER, "services/a/b", "only letters, digits"),
    ];
    for (role, resource, want) in cases {
        for verb in ["grant", "revoke"] {
            let err = cli::assert_fails(
                &format!("{verb} {role} {resource}"),
                &cli.roles(verb, &member, role, resource),
                1,
            );
            assert!(err.starts_with("esprit: "), "{err}");
            assert!(err.contains(want), "{verb} {role} {resource}: {err}");
        }
    }
    let ghost = "serviceAccount:ghost-account@producer-project.iam.gserviceaccount.com";
    let err = cli::assert_fails(
        "ghost",
        &cli.roles("grant", ghost, CONTROLLER, &resource),
        1,
    );
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(cli.roles_json(&[]).len(), 2);

    let revoked = stderr_of(&cli.roles("revoke", &member, CONTROLLER, &resource));
    assert_eq!(
        revoked.trim(),
        format!("revoked {CONTROLLER} on {resource} from {member}")
    );
    let err = cli.fails(&[
        "roles",
        "revoke",
        "--member",
        &member,
        "--role",
        CONTROLLER,
        "--resource",
        &resource,
    ]);
    assert!(err.contains("nothing to revoke"), "{err}");
    // Deleting the account deletes its service bindings too.
    stderr_of(&cli.roles("grant", &member, CONTROLLER, &resource));
    cli.ok(&["accounts", "delete", &proxy]);
    assert!(cli.roles_json(&["--resource", &resource]).is_empty());
}

fn proxy_process(dir: &Path, backend: std::net::SocketAddr, extra: &[&str]) -> Listening {
    let mut command = cli::proxy_command(ESPRIT, dir, CONFIG, echo::FILE_DESCRIPTOR_SET, backend);
    command.args(["--log-format", "json"]).args(extra);
    Listening::json_log(command)
}

async fn call(proxy: &Listening, api_key: &str) -> Result<(), tonic::Status> {
    let mut client = echo::pb::echo_client::EchoClient::connect(format!("http://{}", proxy.addr))
        .await
        .unwrap();
    let mut request = tonic::Request::new(EchoRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", api_key.parse().unwrap());
    client.unary(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_process_signs_its_checks_with_its_key_file() {
    let cli = Cli::new();
    let (proxy_email, proxy_key) = cli.account_with_key("esprit-proxy", "producer-project");
    let (api_key, _) = cli.ok(&["api-keys", "create", "--project", "consumer-project"]);
    let api_key = api_key.trim().to_owned();

    let mut key_server = cli::iam_serve(ESPRIT, &cli.store, &["--check-auth", "required"]);
    key_server.discard_output();
    let url = key_server.addr.clone();
    let backend = start_echo().await;
    let key_arg = proxy_key.to_str().unwrap();
    let mut proxy = proxy_process(
        cli.dir.path(),
        backend.addr(),
        &[
            "--service-control-url",
            &url,
            "--service-account-key",
            key_arg,
            "--service-control-fail-open",
        ],
    );
    let logs = proxy.json_lines();

    // No role yet: refused, fail-open notwithstanding, with a log line saying what to grant.
    let refused = call(&proxy, &api_key).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let line = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l["message"] == "API key could not be checked")
        .expect("a log line for the refused check");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("refused the proxy's credentials (HTTP 403"),
        "{line}"
    );
    assert!(
        error.contains(&format!(
            "grant serviceAccount:{proxy_email} roles/servicemanagement.serviceController"
        )),
        "{line}"
    );

    // Granted through the CLI while both run: the next call passes.
    stderr_of(&cli.roles(
        "grant",
        &format!("serviceAccount:{proxy_email}"),
        CONTROLLER,
        &format!("services/{SERVICE}"),
    ));
    call(&proxy, &api_key).await.unwrap();

    // The same proxy without its key file is refused (401), fail-open or not.
    let mut anonymous = proxy_process(
        cli.dir.path(),
        backend.addr(),
        &["--service-control-url", &url, "--service-control-fail-open"],
    );
    anonymous.discard_output();
    let refused = call(&anonymous, &api_key).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // Nothing the proxy logged holds its key or its token.
    let (_, rest) = proxy.sigterm_and_wait();
    let private_key = std::fs::read_to_string(&proxy_key).unwrap();
    let private_key: Value = serde_json::from_str(&private_key).unwrap();
    let pem = private_key["private_key"].as_str().unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    let seen = cli::remaining_lines(&logs, Duration::from_secs(10));
    let all = format!("{seen:?}{rest}");
    assert!(!all.contains(body_line), "the private key was logged");
    assert!(!all.contains("Bearer ey"), "a token was logged");
}

#[test]
fn a_bad_service_account_key_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"type": "service_account", "private_key": "SECRET"}"#,
    )
    .unwrap();
    for (file, want) in [
        (bad.clone(), "not the JSON of a service account key"),
        (dir.path().join("missing.json"), "No such file"),
    ] {
        let mut command = cli::proxy_command(
            ESPRIT,
            dir.path(),
            CONFIG,
            echo::FILE_DESCRIPTOR_SET,
            "127.0.0.1:1".parse().unwrap(),
        );
        command
            .args(["--service-control-url", "http://127.0.0.1:1"])
            .arg("--service-account-key")
            .arg(&file);
        let out = cli::output(&mut command);
        assert_eq!(out.status.code(), Some(1), "{file:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--service-account-key"), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(!stderr.contains("SECRET"), "{stderr}");
    }
}

#[test]
fn iam_serve_requires_check_credentials_when_asked_and_keeps_keys_public() {
    let cli = Cli::new();
    let (email, _) = cli.account_with_key("esprit-proxy", "producer-project");
    let (api_key, _) = cli.ok(&["api-keys", "create", "--project", "consumer-project"]);
    let check_body = format!(r#"{{"api_key":"{}"}}"#, api_key.trim());
    let post = |addr: &str| {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /v1/services/{SERVICE}:check HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{check_body}",
            check_body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    // On loopback the default is off (as before); --check-auth required asks for a token.
    let mut open = cli::iam_serve(ESPRIT, &cli.store, &[]);
    open.discard_output();
    let response = post(open.addr.strip_prefix("http://").unwrap());
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let mut required = cli::iam_serve(ESPRIT, &cli.store, &["--check-auth", "required"]);
    required.discard_output();
    let addr = required.addr.strip_prefix("http://").unwrap().to_owned();
    let response = post(&addr);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{response}"
    );
    assert!(response.contains("\"UNAUTHENTICATED\""), "{response}");
    // The key documents stay public.
    let keys = {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "GET /robot/v1/metadata/x509/{email} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(keys.starts_with("HTTP/1.1 200"), "{keys}");
    let bad = cli.run(&["serve", "--check-auth", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 12 items 3 and 4 together, as processes: `esprit proxy` checks API keys with an
/// `esprit iam serve --tls-cert/--tls-key --check-auth required` over `https://`, trusting the
/// key server's private CA (`--service-control-ca`) and authenticating with its key file
/// (`--service-account-key`). A valid key passes and an unknown one is refused; without the CA
/// the TLS handshake fails and the call fails closed; with the key of an account lacking the
/// Service Controller role the key server refuses the proxy (403), and so does the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_checks_keys_over_tls_with_a_private_ca_and_its_credentials() {
    let cli = Cli::new();
    let (proxy_email, proxy_key) = cli.account_with_key("esprit-proxy", "producer-project");
    let (_, stranger_key) = cli.account_with_key("no-role-proxy", "producer-project");
    stderr_of(&cli.roles(
        "grant",
        &format!("serviceAccount:{proxy_email}"),
        CONTROLLER,
        &format!("services/{SERVICE}"),
    ));
    let (api_key, _) = cli.ok(&["api-keys", "create", "--project", "consumer-project"]);
    let api_key = api_key.trim().to_owned();

    let pki = keysets::test_server::TestPki::generate().unwrap();
    let (ca, cert, key) = (
        cli.path("ca.pem"),
        cli.path("cert.pem"),
        cli.path("key.pem"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.server_cert_pem).unwrap();
    std::fs::write(&key, &pki.server_key_pem).unwrap();
    let mut key_server = cli::iam_serve(
        ESPRIT,
        &cli.store,
        &[
            "--check-auth",
            "required",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    key_server.discard_output();
    let url = key_server.addr.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let backend = start_echo().await;
    let ca_arg = ca.to_str().unwrap();

    // The CA and the role: checked over TLS, answered.
    let mut trusted = proxy_process(
        cli.dir.path(),
        backend.addr(),
        &[
            "--service-control-url",
            &url,
            "--service-control-ca",
            ca_arg,
            "--service-account-key",
            proxy_key.to_str().unwrap(),
        ],
    );
    trusted.discard_output();
    call(&trusted, &api_key).await.unwrap();
    let unknown = call(&trusted, "AIzaSyNotAKeyOfThisStore0000000000000000")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");

    // Without the CA: the key server's certificate is not trusted; fail closed.
    let mut untrusting = proxy_process(
        cli.dir.path(),
        backend.addr(),
        &[
            "--service-control-url",
            &url,
            "--service-account-key",
            proxy_key.to_str().unwrap(),
        ],
    );
    let logs = untrusting.json_lines();
    let refused = call(&untrusting, &api_key).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("the key service is unavailable"),
        "{refused:?}"
    );
    let line = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l["message"] == "API key could not be checked")
        .expect("a log line for the failed check");
    assert!(!line.to_string().contains("HTTP 403"), "{line}");

    // The CA, but an account without the role: refused by the key server, and by the proxy.
    let mut stranger = proxy_process(
        cli.dir.path(),
        backend.addr(),
        &[
            "--service-control-url",
            &url,
            "--service-control-ca",
            ca_arg,
            "--service-account-key",
            stranger_key.to_str().unwrap(),
        ],
    );
    let logs = stranger.json_lines();
    let refused = call(&stranger, &api_key).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let line = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l["message"] == "API key could not be checked")
        .expect("a log line for the refused check");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("refused the proxy's credentials (HTTP 403"),
        "{line}"
    );
}
