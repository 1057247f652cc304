//! `esprit iam serve`: the key server, with its token service and admin listener.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use iam::StoreLocation;

use crate::proxy_cmd::LogFormat;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and h2c, or TLS with --tls-cert/--tls-key).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Serve TLS (ALPN h2 and http/1.1) with this certificate chain (PEM). Requires --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Run the token service with this issuer URL (the address clients reach this server at):
    /// the `iss` of its ID tokens and the base of /.well-known/openid-configuration,
    /// /oauth2/v3/certs, /oauth2/v1/certs and /token. Needs a key-encryption key.
    #[arg(long, value_name = "URL")]
    issuer_url: Option<String>,
    /// The key-encryption key file (`esprit iam kek generate`); else the environment variable
    /// ESPRIT_IAM_KEK (base64 of 32 bytes). Never stored.
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
    /// How long each token-service signing key signs (1h..=90d). A new key is published 7
    /// minutes before it signs; old keys stay published until their tokens expired.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        value_parser = crate::duration::SIGNING_KEY_ROTATION.parser()
    )]
    signing_key_rotation: Duration,
    /// Who may ask for API-key checks (POST /v1/services/SERVICE:check): `required`: callers
    /// authenticate (`Authorization: Bearer`: a JWT signed with their key file, as
    /// `esprit proxy --service-account-key` sends, or a token-service access token) and hold
    /// roles/servicemanagement.serviceController on services/SERVICE (401/403 otherwise);
    /// `off`: anyone who reaches the server. Default: `required`, except `off` when --listen is
    /// a loopback address (only local processes can reach it, as in the tutorial and demo).
    /// Public-key documents and the token service are not affected.
    #[arg(long, value_enum, value_name = "MODE")]
    check_auth: Option<CheckAuthMode>,
    /// The most store connections open at once for lookups (1..=256); lookups beyond wait.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=iam::MAX_POOL_SIZE as i64))]
    store_pool_size: u16,
    /// How long a lookup waits for a free store connection before the key server answers
    /// 503 (1ms..=60s).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = crate::duration::STORE_POOL_WAIT.parser()
    )]
    store_pool_wait: Duration,
    #[command(flatten)]
    connections: crate::conn_args::ConnectionArgs,
    /// Log format: one JSON object per line, or text.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the admin pages (/metrics, /healthz, /readyz, /config) on this address, apart from
    /// the key endpoints: HOST:PORT, or a bare PORT for 127.0.0.1:PORT. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = admin::parse_admin_listen)]
    admin_listen: Option<SocketAddr>,
}

/// `iam serve --check-auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CheckAuthMode {
    Required,
    Off,
}

/// `/readyz` of `iam serve`: serving (`listener`), and the store answers (`store`).
struct KeyServerReadiness(iam::StoreProbe);

impl admin::Readiness for KeyServerReadiness {
    fn checks(&self) -> Vec<admin::Check> {
        let store = match self.0.state().failing() {
            None => admin::Check::pass("store"),
            Some(why) => admin::Check::fail("store", why),
        };
        vec![admin::Check::pass("listener"), store]
    }
}

/// The mode `iam serve` runs: the flag's, else `required` off loopback and `off` on it.
fn check_auth_mode(flag: Option<CheckAuthMode>, listen: &SocketAddr) -> CheckAuthMode {
    flag.unwrap_or(if listen.ip().is_loopback() {
        CheckAuthMode::Off
    } else {
        CheckAuthMode::Required
    })
}

/// The key-encryption key: `--kek-file`, else `ESPRIT_IAM_KEK`, else none.
fn kek(file: Option<&Path>) -> anyhow::Result<Option<iam::Kek>> {
    if let Some(path) = file {
        return Ok(Some(iam::Kek::from_file(path)?));
    }
    match std::env::var(iam::KEK_ENV) {
        Ok(value) => Ok(Some(
            iam::Kek::from_env_value(&value)
                .with_context(|| format!("reading {}", iam::KEK_ENV))?,
        )),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{} is not valid UTF-8", iam::KEK_ENV)
        }
    }
}

/// The token service `serve` runs, if `--issuer-url` asks for one.
fn token_service(
    store: &StoreLocation,
    args: &ServeArgs,
) -> anyhow::Result<Option<iam::TokenService>> {
    let Some(issuer_url) = &args.issuer_url else {
        if args.kek_file.is_some() {
            eprintln!("esprit: warning: --kek-file is unused without --issuer-url");
        }
        return Ok(None);
    };
    let Some(kek) = kek(args.kek_file.as_deref())? else {
        anyhow::bail!(
            "--issuer-url needs a key-encryption key: --kek-file FILE or {} (make one with \
             `esprit iam kek generate --out FILE`)",
            iam::KEK_ENV
        );
    };
    let settings = iam::TokenServiceSettings {
        rotation: args.signing_key_rotation,
        ..iam::TokenServiceSettings::new(issuer_url.clone(), kek)
    };
    let tokens = iam::TokenService::open(store, settings)
        .with_context(|| format!("starting the token service on {store}"))?;
    Ok(Some(tokens))
}

pub(super) fn serve(store: &StoreLocation, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::logging::init(args.log_format, crate::logging::DEFAULT_BUFFER_LINES);
    // Before the runtime and the listener: a wrong key-encryption key fails at start.
    let tokens = token_service(store, &args)?;
    // So is an unreadable certificate or key.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(iam::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shutdown = crate::signals::terminated();
        tracing::info!(%addr, %store, "key server listening");
        // The URL alone on stdout, for scripts and tests that listen on port 0.
        println!("{scheme}://{addr}");
        std::io::stdout().flush().context("writing to stdout")?;
        let mut limits = iam::ConnectionLimits::default();
        args.connections.apply(&mut limits);
        if let Some(tokens) = &tokens {
            tracing::info!(issuer = %tokens.issuer_url(), "token service on");
        }
        let settings = iam::PoolSettings {
            size: usize::from(args.store_pool_size),
            wait: args.store_pool_wait,
            ..iam::PoolSettings::default()
        };
        let location = store.clone();
        let pool = tokio::task::spawn_blocking(move || iam::StorePool::open(location, settings))
            .await
            .context("opening the store")?
            .with_context(|| format!("opening {store}"))?;
        let check_auth = match check_auth_mode(args.check_auth, &addr) {
            CheckAuthMode::Required => {
                tracing::info!(check_auth = "required", "API-key checks answered to callers holding roles/servicemanagement.serviceController on the service");
                iam::CheckAuth::required()
            }
            CheckAuthMode::Off => {
                if addr.ip().is_loopback() {
                    tracing::info!(check_auth = "off", "API-key checks answered to any local caller (loopback)");
                } else {
                    tracing::warn!(check_auth = "off", "API-key checks answered to anyone who reaches this address");
                }
                iam::CheckAuth::Off
            }
        };
        let Some(admin_addr) = args.admin_listen else {
            return iam::serve_observed(
                listener, pool, tokens, limits, None, tls, check_auth, shutdown,
            )
            .await
            .with_context(|| format!("serving keys from {store}"));
        };
        let mut registry = admin::prometheus_client::registry::Registry::default();
        let metrics = iam::IamMetrics::register(&mut registry);
        registry.register_collector(Box::new(admin::process::ProcessCollector));
        let config = admin::ActiveConfig::new(admin::ConfigInfo {
            id: format!("store-schema-{}", iam::SCHEMA_VERSION),
            sources: vec![store.to_string()],
            loaded_at: SystemTime::now(),
        });
        // Ready while the store answers (a probe a second on a connection of its own), so a
        // load balancer stops sending requests a replica could only fail.
        let probe_settings = iam::ProbeSettings::default();
        let mut probe = iam::StoreProbe::spawn(pool.clone(), probe_settings);
        probe.first_verdict(&probe_settings).await;
        let state = admin::AdminState {
            registry,
            readiness: std::sync::Arc::new(KeyServerReadiness(probe)),
            config,
        };
        let server = admin::AdminServer::bind(admin_addr, admin::LIMITS, state).await?;
        tracing::info!(admin = %server.local_addr(), "admin listener");
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(server.serve(async {
            let _ = admin_stopped.await;
        }));
        let served =
            iam::serve_observed(
                listener,
                pool,
                tokens,
                limits,
                Some(metrics),
                tls,
                check_auth,
                shutdown,
            )
            .await
                .with_context(|| format!("serving keys from {store}"));
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_auth_is_required_off_loopback_unless_set() {
        let table = [
            ("127.0.0.1:8085", None, CheckAuthMode::Off),
            ("[::1]:8085", None, CheckAuthMode::Off),
            ("0.0.0.0:8085", None, CheckAuthMode::Required),
            ("10.1.2.3:8085", None, CheckAuthMode::Required),
            ("[::]:8085", None, CheckAuthMode::Required),
            (
                "127.0.0.1:8085",
                Some(CheckAuthMode::Required),
                CheckAuthMode::Required,
            ),
            ("0.0.0.0:8085", Some(CheckAuthMode::Off), CheckAuthMode::Off),
        ];
        for (listen, flag, want) in table {
            let addr: SocketAddr = listen.parse().expect("address");
            assert_eq!(check_auth_mode(flag, &addr), want, "{listen} {flag:?}");
        }
    }
}
