//! `esprit demo`: Google's "Authentication Between Services" tutorial on this machine, in one
//! process, in seconds.
//!
//! It starts the key server (`iam::serve_observed` on a fresh store, checks authenticated), a Bookstore backend on a fresh
//! database and the proxy, each on a free loopback port; creates the consumer's service account
//! and key file; writes the tutorial's `api_config_auth.yaml` with the local key server as
//! `jwks_uri` and the tutorial's usage rules (only `ListShelves` allows unregistered calls, every
//! other method needs an API key, checked by the same key server, which answers the proxy only
//! because the proxy's own account, whose key file signs its checks, holds
//! `roles/servicemanagement.serviceController` on the service); mints a token as `esprit
//! token` does; creates an API key for the consumer's project; and calls the Bookstore through
//! the proxy with a real gRPC client: `ListShelves` with the token (accepted), without one, and
//! with tokens signed by another account's key (rejected); then `GetShelf` with the token and no
//! API key, an invalid one (both rejected) and the valid one (accepted). Then the tutorial's
//! stringent path: the key server's token service (with a key-encryption key made for the demo)
//! signs ID tokens: the consumer's passes; one for another audience, and one of another account
//! (the config accepts only the consumer from that issuer), are refused; the other account is
//! refused the consumer's ID token by the IAM Credentials API until it is granted the Token
//! Creator role on the consumer, and then that token passes. Each step is printed
//! with the shell command a user would type to do the same by hand. The exit status is 0 only if
//! every call behaved as expected.
//!
//! What it deliberately does not do: print any private key (the key files stay in the work
//! directory, which is removed at exit), log a token through `tracing`, or leave anything
//! behind (servers stopped, work directory removed), unless `--keep-running` asks to keep the
//! stack up until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bookstore::pb::bookstore_client::BookstoreClient;
use clap::Args;
use iam::KeyServerUrl;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Endpoint;

use calls::{BookstoreMethod, Call, Expect, make_call};
use setup::{
    Files, create_account_with_key, create_api_key, grant_service_controller, mint,
    service_config_yaml,
};
use transcript::{command, output, print_try_by_hand, step};

mod calls;
mod rest;
mod setup;
mod stringent;
mod transcript;

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
/// The producer's proxy: its account signs the API-key checks (ESP's --service-account-key).
const PROXY: (&str, &str) = ("esprit-proxy", "producer-project");
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
    // The key server is also the token service; its token endpoint goes into the key files,
    // where Google's libraries and `esprit token --id-token` find it.
    let issuer_url = format!("http://{iam_addr}");
    let token_uri = format!("{issuer_url}/token");
    command(&format!(
        "export ESPRIT_IAM_STORE={}",
        files.store.display()
    ));
    let consumer = create_account_with_key(
        &files,
        CONSUMER,
        &files.consumer_key,
        &key_server,
        &token_uri,
    )?;

    step(
        "2. Publish the accounts' public keys at Google's paths (www.googleapis.com/robot/v1/metadata/x509/...)",
    );
    command(&format!(
        "esprit iam kek generate --out {}",
        files.kek.display()
    ));
    let kek = iam::Kek::generate().context("making a key-encryption key")?;
    kek.write_new_file(&files.kek)
        .with_context(|| format!("writing {}", files.kek.display()))?;
    // The producer's proxy gets an account too: the key server answers API-key checks only to
    // accounts holding the Service Controller role on the service (ESP's service account).
    let proxy_account =
        create_account_with_key(&files, PROXY, &files.proxy_key, &key_server, &token_uri)?;
    grant_service_controller(&files, &proxy_account, SERVICE_NAME)?;
    command(&format!(
        "esprit iam serve --listen {iam_addr} --issuer-url {issuer_url} --kek-file {} --check-auth required",
        files.kek.display()
    ));
    let tokens = iam::TokenService::open(
        &files.store,
        iam::TokenServiceSettings::new(issuer_url.clone(), kek),
    )
    .context("starting the token service")?;
    let pool = iam::StorePool::open(&files.store, iam::PoolSettings::default())
        .with_context(|| format!("opening {}", files.store.display()))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let iam_task = tokio::spawn(iam::serve_observed(
        iam_listener,
        pool,
        Some(tokens),
        iam::ConnectionLimits::default(),
        None,
        None,
        iam::CheckAuth::required(),
        async {
            let _ = stopped.await;
        },
    ));
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
        "4. The service config (api_config_auth.yaml: the consumer's email as issuer, its keys as jwks_uri; the token service for the stringent path), and the proxy",
    );
    std::fs::write(
        &files.config,
        service_config_yaml(&consumer, &jwks_uri, &issuer_url, &consumer),
    )
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
    settings.api_keys.service_control_urls = vec![key_server.as_str().to_owned()];
    // Signed with the proxy's key file, as `--service-account-key` does.
    settings.api_keys.service_account_key = Some(std::sync::Arc::new(
        proxy::CallerCredentials::load(&files.proxy_key).map_err(anyhow::Error::msg)?,
    ));
    let proxy = proxy::Proxy::bind(&config, settings)
        .await
        .context("starting the proxy")?;
    let proxy_addr = proxy.local_addr();
    command(&format!(
        "esprit proxy --service-config {} --descriptor {} --backend grpc://{bookstore_addr} --listen {proxy_addr} --service-control-url {} --service-account-key {}",
        files.config.display(),
        files.descriptor.display(),
        key_server.as_str(),
        files.proxy_key.display()
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
    let other = create_account_with_key(&files, OTHER, &files.other_key, &key_server, &token_uri)?;
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
        method: BookstoreMethod::ListShelves,
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
        method: BookstoreMethod::GetShelf(1),
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
    let accounts = stringent::Accounts {
        consumer: &consumer,
        other: &other,
        port,
    };
    failures += stringent::run(&mut client, &files, &accounts).await?;
    drop(client);
    failures += rest::run(proxy_addr, &token, &api_key).await?;

    if keep_running {
        let stopped = crate::signals::terminated();
        print_try_by_hand(
            &files,
            &consumer,
            (&token, &api_key),
            &iam_server,
            bookstore_addr,
            port,
        );
        stopped.await;
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
