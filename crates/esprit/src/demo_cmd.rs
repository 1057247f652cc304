//! `esprit demo`: Google's "Authentication Between Services" tutorial on this machine, in one
//! process, in seconds.
//!
//! It starts the key server (`iam::serve` on a fresh store), a Bookstore backend on a fresh
//! database and the proxy, each on a free loopback port; creates the consumer's service account
//! and key file; writes the tutorial's `api_config_auth.yaml` with the local key server as
//! `jwks_uri` and the tutorial's usage rules (only `ListShelves` allows unregistered calls, every
//! other method needs an API key, checked by the same key server); mints a token as `esprit
//! token` does; creates an API key for the consumer's project; and calls the Bookstore through
//! the proxy with a real gRPC client: `ListShelves` with the token (accepted), without one, and
//! with tokens signed by another account's key (rejected); then `GetShelf` with the token and no
//! API key, an invalid one (both rejected) and the valid one (accepted). Each step is printed
//! with the shell command a user would type to do the same by hand. The exit status is 0 only if
//! every call behaved as expected.
//!
//! What it deliberately does not do: print any private key (the key files stay in the work
//! directory, which is removed at exit), log a token through `tracing`, or leave anything
//! behind (servers stopped, work directory removed), unless `--keep-running` asks to keep the
//! stack up until Ctrl-C / SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bookstore::pb::bookstore_client::BookstoreClient;
use clap::Args;
use iam::{KeyAlgorithm, KeyServerUrl};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Endpoint;

use calls::{Call, Expect, Method, make_call};

mod calls;

#[derive(Args)]
pub struct DemoArgs {
    /// After the checks, keep the key server, Bookstore and proxy up and print commands to try
    /// by hand, until Ctrl-C or SIGTERM.
    #[arg(long)]
    keep_running: bool,
    /// Where to make the demo's own temporary directory (store, key files, config, database);
    /// created if missing. That directory is removed at exit; DIR itself is kept.
    /// Default: the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
}

/// The producer's service (the config's `name`, hence the tokens' audience).
const SERVICE_NAME: &str = "bookstore.endpoints.producer-project.cloud.goog";
/// The consumer's account: the one the provider trusts.
const CONSUMER: (&str, &str) = ("bookstore-client", "consumer-project");
/// Another account, whose keys the provider does not trust.
const OTHER: (&str, &str) = ("other-client", "other-project");
const LIST_SHELVES: &str = "endpoints.examples.bookstore.Bookstore.ListShelves";
/// Shaped like a Google API key, known to no key server.
const INVALID_API_KEY: &str = "AIzaSyInvalidInvalidInvalidInvalidInva";

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // Quiet by default: the transcript is the output. `RUST_LOG=info` shows the servers' logs
    // (which never contain tokens) on stderr.
    let _log = std::env::var_os("RUST_LOG").map(|_| {
        crate::logging::init(
            crate::proxy_cmd::LogFormat::Text,
            crate::logging::DEFAULT_BUFFER_LINES,
        )
    });
    let parent = args.workdir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating the work directory {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("esprit-demo-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(demo(dir.path(), args.keep_running));
    // Anything still running (after an early error) stops with the runtime.
    drop(runtime);
    let shown = dir.path().display().to_string();
    dir.close()
        .with_context(|| format!("removing the demo directory {shown}"))?;
    let failures = outcome?;
    if failures > 0 {
        bail!("demo failed: {failures} call(s) did not behave as expected (see above)");
    }
    println!("\nAll calls behaved as expected; servers stopped, {shown} removed.");
    Ok(ExitCode::SUCCESS)
}

/// Seconds since the epoch.
fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// The transcript: step titles, the equivalent shell commands, and what they print.
fn step(title: &str) {
    println!("\n# {title}");
}

fn command(line: &str) {
    println!("$ {line}");
}

fn output(text: &str) {
    for line in text.lines() {
        println!("{line}");
    }
    let _ = std::io::stdout().flush();
}

/// The tutorial's `api_config_auth.yaml`, with the consumer's local key server as `jwks_uri`:
/// every method needs a token, and every method but `ListShelves` an API key.
fn service_config_yaml(issuer: &str, jwks_uri: &str) -> String {
    format!(
        r#"# The Bookstore tutorial's service configuration with service-to-service authentication:
# every method needs a token signed by the consumer's service account.
type: google.api.Service
config_version: 3
name: {SERVICE_NAME}
title: Bookstore gRPC API
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    # The consumer's service account email.
    issuer: {issuer}
    # esprit's key server instead of https://www.googleapis.com.
    jwks_uri: {jwks_uri}
  rules:
  # This auth rule applies to all methods.
  - selector: "*"
    requirements:
      - provider_id: google_service_account
usage:
  rules:
  # ListShelves methods can be called without an API Key.
  - selector: {LIST_SHELVES}
    allow_unregistered_calls: true
"#
    )
}

/// A server on a background task, stopped by sending on `stop`.
struct Background<T> {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

async fn bind_loopback() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    let addr = listener.local_addr().context("reading the bound address")?;
    Ok((listener, addr))
}

/// The demo's files, all in its temporary directory.
struct Files {
    store: PathBuf,
    consumer_key: PathBuf,
    other_key: PathBuf,
    config: PathBuf,
    descriptor: PathBuf,
    database: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            store: dir.join("iam.db"),
            consumer_key: dir.join("bookstore-client.json"),
            other_key: dir.join("other-client.json"),
            config: dir.join("api_config_auth.yaml"),
            descriptor: dir.join("api_descriptor.pb"),
            database: dir.join("bookstore.db"),
        }
    }
}

/// One account and its key file, created through the `iam` store as the CLI does, with the
/// equivalent commands printed. Returns the email.
fn create_account_with_key(
    files: &Files,
    (name, project): (&str, &str),
    key_file: &Path,
    key_server: &KeyServerUrl,
) -> anyhow::Result<String> {
    let mut store = iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?;
    command(&format!(
        "esprit iam accounts create {name} --project {project}"
    ));
    let account = store
        .create_account(name, project, now()?)
        .with_context(|| format!("creating the account {name}"))?;
    output(&account.email);
    command(&format!(
        "esprit iam keys create {} --out {} --issuer-base-url {}",
        account.email,
        key_file.display(),
        key_server.as_str()
    ));
    let key = store
        .create_key(
            &account.email,
            KeyAlgorithm::Rs256,
            key_server,
            key_file,
            now()?,
        )
        .with_context(|| format!("creating a key for {}", account.email))?;
    output(&key.key_id);
    Ok(account.email)
}

/// An API key for `project`, created through the `iam` store as `esprit iam api-keys create`
/// does; prints the equivalent command and what that command says on stderr (not the key).
fn create_api_key(files: &Files, project: &str) -> anyhow::Result<String> {
    let mut store = iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?;
    command(&format!(
        "API_KEY=$(esprit iam api-keys create --project {project})"
    ));
    let (key, record) = store
        .create_api_key(project, None, now()?)
        .with_context(|| format!("creating an API key for {project}"))?;
    output(&format!(
        "created API key {} for project {} (keep it secret: it is shown only now)",
        record.id, record.project
    ));
    Ok(key)
}

/// A token from `key_file` for the service, as `esprit token --key-file F --audiences SERVICE
/// [--issuer ISS]` mints it.
fn mint(key_file: &Path, issuer: Option<&str>) -> anyhow::Result<String> {
    let args = crate::token_cmd::MintArgs::new(
        key_file.to_owned(),
        SERVICE_NAME.to_owned(),
        issuer.map(str::to_owned),
    );
    crate::token_cmd::mint_token(&args)
}

/// Runs the demo in `dir`; returns how many calls did not behave as expected.
async fn demo(dir: &Path, keep_running: bool) -> anyhow::Result<usize> {
    let files = Files::new(dir);
    println!(
        "esprit demo: Google's \"Authentication Between Services\" tutorial, on this machine."
    );
    println!(
        "Work directory: {} (removed at exit). The lines after `$` are the commands that do \
         each step by hand.",
        dir.display()
    );

    step(
        "1. The consumer's service account and its JSON key file (GCP Console: Create credentials > Service account key)",
    );
    let (iam_listener, iam_addr) = bind_loopback().await?;
    let key_server =
        KeyServerUrl::parse(&format!("http://{iam_addr}")).context("the key server's URL")?;
    command(&format!(
        "export ESPRIT_IAM_STORE={}",
        files.store.display()
    ));
    let consumer = create_account_with_key(&files, CONSUMER, &files.consumer_key, &key_server)?;

    step(
        "2. Publish the accounts' public keys at Google's paths (www.googleapis.com/robot/v1/metadata/x509/...)",
    );
    command(&format!("esprit iam serve --listen {iam_addr}"));
    let (stop, stopped) = oneshot::channel::<()>();
    let store_path = files.store.clone();
    let iam_task = tokio::spawn(async move {
        iam::serve(iam_listener, &store_path, async {
            let _ = stopped.await;
        })
        .await
    });
    let iam_server = Background {
        addr: iam_addr,
        stop,
        task: iam_task,
    };
    output(key_server.as_str());
    let jwks_uri = key_server.x509_url(&consumer);

    step("3. The Bookstore backend");
    let (listener, bookstore_addr) = bind_loopback().await?;
    command(&format!(
        "bookstore-server --host 127.0.0.1 --port {} --db {}",
        bookstore_addr.port(),
        files.database.display()
    ));
    let store = bookstore::Store::open(&bookstore::DbLocation::File(files.database.clone()))
        .context("opening the Bookstore database")?;
    let bookstore = bookstore::RunningServer::start(listener, std::sync::Arc::new(store))
        .context("starting the Bookstore")?;

    step(
        "4. The service config (api_config_auth.yaml: the consumer's email as issuer, its keys as jwks_uri), and the proxy",
    );
    std::fs::write(&files.config, service_config_yaml(&consumer, &jwks_uri))
        .with_context(|| format!("writing {}", files.config.display()))?;
    std::fs::write(&files.descriptor, bookstore::FILE_DESCRIPTOR_SET)
        .with_context(|| format!("writing {}", files.descriptor.display()))?;
    command(&format!("cat {}", files.config.display()));
    output(&std::fs::read_to_string(&files.config).context("reading the config back")?);
    let config = service_config::load(&files.config, std::slice::from_ref(&files.descriptor))
        .with_context(|| format!("loading {}", files.config.display()))?;
    let backend = format!("grpc://{bookstore_addr}")
        .parse()
        .context("the backend URL")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut settings = proxy::ProxySettings::new(listen, backend);
    // The key server checks API keys too (`POST /v1/services/{service}:check`).
    settings.api_keys.service_control_url = Some(key_server.as_str().to_owned());
    let proxy = proxy::Proxy::bind(&config, settings)
        .await
        .context("starting the proxy")?;
    let proxy_addr = proxy.local_addr();
    command(&format!(
        "esprit proxy --service-config {} --descriptor {} --backend grpc://{bookstore_addr} --listen {proxy_addr} --service-control-url {}",
        files.config.display(),
        files.descriptor.display(),
        key_server.as_str()
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy_task = tokio::spawn(proxy.serve(async {
        let _ = stopped.await;
    }));
    let proxy_server = Background {
        addr: proxy_addr,
        stop,
        task: proxy_task,
    };

    step("5. A token signed with the consumer's key (the tutorial's generate-jwt.py)");
    command(&format!(
        "JWT_TOKEN=$(esprit token --key-file {} --audiences {SERVICE_NAME})",
        files.consumer_key.display()
    ));
    let token = mint(&files.consumer_key, None)?;
    command("echo $JWT_TOKEN");
    output(&token);

    step("6. Another account, which the service config does not trust");
    let other = create_account_with_key(&files, OTHER, &files.other_key, &key_server)?;
    command(&format!(
        "OTHER_TOKEN=$(esprit token --key-file {} --audiences {SERVICE_NAME})",
        files.other_key.display()
    ));
    let other_token = mint(&files.other_key, None)?;
    command(&format!(
        "FORGED_TOKEN=$(esprit token --key-file {} --audiences {SERVICE_NAME} --issuer {consumer})",
        files.other_key.display()
    ));
    let forged_token = mint(&files.other_key, Some(&consumer))?;

    step(
        "7. An API key for the consumer's project (GCP Console: APIs & Services > Credentials > Create credentials > API key)",
    );
    let api_key = create_api_key(&files, CONSUMER.1)?;

    step("8. Call ListShelves through the proxy: it needs a token, not an API key");
    let channel = Endpoint::from_shared(format!("http://{proxy_addr}"))
        .context("the proxy's URL")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to the proxy at {proxy_addr}"))?;
    let mut client = BookstoreClient::new(channel);
    let port = proxy_addr.port();
    let unauthenticated = |message| Expect::Rejected {
        code: Code::Unauthenticated,
        message,
    };
    let list_shelves = |line, token, expect| Call {
        line,
        method: Method::ListShelves,
        token,
        api_key: None,
        expect,
    };
    let listing = [
        list_shelves(
            format!("bookstore-client --port {port} --auth_token $JWT_TOKEN  # with the token"),
            Some(token.as_str()),
            Expect::Answer,
        ),
        list_shelves(
            format!("bookstore-client --port {port}  # without a token"),
            None,
            unauthenticated("Jwt is missing"),
        ),
        list_shelves(
            format!("bookstore-client --port {port} --auth_token $OTHER_TOKEN  # {other}"),
            Some(&other_token),
            unauthenticated("Jwt issuer is not configured"),
        ),
        list_shelves(
            format!(
                "bookstore-client --port {port} --auth_token $FORGED_TOKEN  # {other}'s key, posing as {consumer}"
            ),
            Some(&forged_token),
            unauthenticated("Jwks doesn't have key to match kid or alg from Jwt"),
        ),
    ];
    let mut failures = 0;
    for call in &listing {
        command(&call.line);
        if !make_call(&mut client, call).await? {
            failures += 1;
        }
    }

    step(
        "9. Call GetShelf through the proxy: it needs an API key as well (usage.rules: only ListShelves allows unregistered calls)",
    );
    // With the consumer's valid token each time: the token is checked first (ESPv2's filter
    // order), so these calls show the API-key check alone.
    let get_shelf = |args: &str, api_key, expect| Call {
        line: format!("bookstore-client --port {port} --auth_token $JWT_TOKEN {args}"),
        method: Method::GetShelf(1),
        token: Some(token.as_str()),
        api_key,
        expect,
    };
    let getting = [
        get_shelf(
            "get-shelf 1  # without an API key",
            None,
            unauthenticated(
                "Method doesn't allow unregistered callers (callers without established identity). \
                 Please use API Key or other form of API consumer identity to call this API.",
            ),
        ),
        get_shelf(
            &format!("--api_key {INVALID_API_KEY} get-shelf 1  # a key nobody issued"),
            Some(INVALID_API_KEY),
            Expect::Rejected {
                code: Code::InvalidArgument,
                message: "API key not valid. Please pass a valid API key.",
            },
        ),
        get_shelf(
            "--api_key $API_KEY get-shelf 1",
            Some(api_key.as_str()),
            Expect::Answer,
        ),
    ];
    for call in &getting {
        command(&call.line);
        if !make_call(&mut client, call).await? {
            failures += 1;
        }
    }
    drop(client);

    if keep_running {
        print_try_by_hand(
            &files,
            &consumer,
            (&token, &api_key),
            &iam_server,
            bookstore_addr,
            port,
        );
        crate::signals::terminated().await;
        println!("\nStopping.");
    }

    // Proxy first (it holds connections to the other two), then the backend and key server.
    let _ = proxy_server.stop.send(());
    proxy_server.task.await.context("the proxy task failed")?;
    bookstore.stop().await.context("stopping the Bookstore")?;
    let _ = iam_server.stop.send(());
    iam_server
        .task
        .await
        .context("the key server task failed")?
        .context("serving keys")?;
    Ok(failures)
}

fn print_try_by_hand(
    files: &Files,
    consumer: &str,
    (token, api_key): (&str, &str),
    iam_server: &Background<iam::Result<()>>,
    bookstore_addr: SocketAddr,
    proxy_port: u16,
) {
    let iam_addr = iam_server.addr;
    println!(
        "\n# The stack stays up until Ctrl-C (or SIGTERM). Try it by hand (binaries: cargo build --release -p esprit -p bookstore):"
    );
    println!("#   key server  http://{iam_addr}");
    println!("#   Bookstore   127.0.0.1:{}", bookstore_addr.port());
    println!("#   proxy       127.0.0.1:{proxy_port}");
    println!("#   key file    {}", files.consumer_key.display());
    for line in [
        format!("export ESPRIT_IAM_STORE={}", files.store.display()),
        format!("JWT_TOKEN={token}"),
        format!("bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN list-shelves"),
        format!("bookstore-client --port {proxy_port} list-shelves"),
        format!("API_KEY={api_key}"),
        format!(
            "bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN --api_key $API_KEY get-shelf 1"
        ),
        format!("bookstore-client --port {proxy_port} --auth_token $JWT_TOKEN get-shelf 1"),
        format!("esprit iam api-keys list --project {}", CONSUMER.1),
        format!(
            "esprit token --key-file {} --audiences {SERVICE_NAME}",
            files.consumer_key.display()
        ),
        format!(
            "esprit token inspect $JWT_TOKEN --service-config {} --descriptor {} --method {LIST_SHELVES}",
            files.config.display(),
            files.descriptor.display()
        ),
        format!("esprit iam keys list {consumer}"),
        format!("curl -s http://{iam_addr}/robot/v1/metadata/x509/{consumer}"),
    ] {
        command(&line);
    }
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_valid_and_needs_a_token_everywhere_and_a_key_but_for_list_shelves() {
        let yaml = service_config_yaml(
            "bookstore-client@consumer-project.iam.gserviceaccount.com",
            "http://127.0.0.1:1/robot/v1/metadata/x509/bookstore-client@consumer-project.iam.gserviceaccount.com",
        );
        let descriptor =
            service_config::Descriptor::from_file_descriptor_set(bookstore::FILE_DESCRIPTOR_SET)
                .expect("descriptor");
        let config = service_config::from_yaml(&yaml, descriptor).expect("valid config");
        assert_eq!(config.name(), SERVICE_NAME);
        // The tutorial's usage rules: ListShelves alone allows unregistered calls.
        let methods = config.methods();
        assert!(methods.len() > 1);
        for method in methods {
            let want = if method.selector.as_str() == LIST_SHELVES {
                service_config::ApiKeyRequirement::NotRequired
            } else {
                service_config::ApiKeyRequirement::Required
            };
            assert_eq!(method.api_key, want, "{}", method.selector.as_str());
        }
    }
}
