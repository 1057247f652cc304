//! `esprit proxy …`: load the service config, build the runtime, serve until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::duration;

mod http_args;
use http_args::{CorsArgs, TranscodingArgs};

#[derive(Args)]
pub struct ProxyArgs {
    /// The service configuration: `google.api.Service` YAML, or the expanded JSON form.
    #[arg(long, value_name = "FILE")]
    service_config: PathBuf,
    /// The API's descriptor: a FileDescriptorSet (`.pb`) or `.proto` files. Repeatable. Optional
    /// with the JSON form, which embeds it.
    #[arg(long, value_name = "FILE")]
    descriptor: Vec<PathBuf>,
    /// Where calls go: `grpc://HOST:PORT` (h2c) or `grpcs://HOST:PORT` (TLS).
    #[arg(long, value_name = "URL")]
    backend: proxy::BackendUrl,
    /// CA bundle (PEM) trusted for a `grpcs://` backend, instead of the system roots.
    #[arg(long, value_name = "FILE")]
    backend_ca: Option<PathBuf>,
    /// Give up connecting to the backend after this long and answer UNAVAILABLE.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::BACKEND_CONNECT_TIMEOUT.parser())]
    backend_connect_timeout: Duration,
    /// HTTP/2 connections to the backend, used in turn. One batches best; more spread many
    /// concurrent calls past the backend's per-connection stream limit.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    backend_connections: u16,
    /// Address to listen on (h2c and HTTP/1.1, or TLS with --tls-cert/--tls-key).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Serve TLS with this certificate chain (PEM). Requires --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// An HTTP path the proxy answers itself: 200 while serving, 503 while draining.
    #[arg(long, value_name = "PATH")]
    healthz: Option<String>,
    /// After SIGTERM/SIGINT, how long in-flight calls may continue before the proxy exits.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::DRAIN_TIMEOUT.parser())]
    drain_timeout: Duration,
    /// Threads serving connections, each with its own event loop and backend connections; a
    /// connection goes to the one serving the fewest. Default: the number of cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per client connection.
    #[arg(
        long,
        value_name = "N",
        default_value_t = proxy::Http2Limits::default().max_concurrent_streams,
        value_parser = clap::value_parser!(u32).range(1..=65_536)
    )]
    http2_max_concurrent_streams: u32,
    #[command(flatten)]
    connections: crate::conn_args::ConnectionArgs,
    /// A call with no frame in either direction for this long ends with DEADLINE_EXCEEDED and
    /// its backend stream is reset (Envoy's stream_idle_timeout). A streaming method's
    /// `backend.rules[].deadline` replaces it for that method. 1s to 24h.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::conn_args::stream_idle_timeout)]
    stream_idle_timeout: Duration,
    /// Tolerance on a token's `exp` and `nbf`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::CLOCK_SKEW.parser())]
    clock_skew: Duration,
    /// How long a fetched key set is fresh; it is refreshed in the background before then.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration::JWKS_CACHE_DURATION.parser())]
    jwks_cache_duration: Duration,
    /// How long past its freshness the last good key set is still used while refreshes fail;
    /// after that the provider's tokens are rejected (fail closed).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration::JWKS_MAX_STALE.parser())]
    jwks_max_stale: Duration,
    /// A token naming a `kid` not in the key set makes the proxy refetch the set, at most once
    /// per `kid` per this interval (per provider); also the period of `--jwks-refetch-limit`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::JWKS_REFETCH_INTERVAL.parser())]
    jwks_refetch_interval: Duration,
    /// At most this many unknown-`kid` refetches per provider per `--jwks-refetch-interval`,
    /// whatever the `kid`s (a token bucket), so random `kid`s cannot cause a fetch storm.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    jwks_refetch_limit: u32,
    /// Bound on one key-set fetch (connect, headers and body).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::JWKS_FETCH_TIMEOUT.parser())]
    jwks_fetch_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for `https` key servers, on top of the system roots.
    #[arg(long, value_name = "FILE")]
    jwks_ca: Option<PathBuf>,
    /// Verified tokens remembered (a repeated token skips its signature check; time, issuer and
    /// audience are checked on every call).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    jwt_cache_size: u64,
    /// The key server that checks API keys (`esprit iam serve`), e.g. `http://127.0.0.1:8085`.
    /// Repeatable (at most 16): replicas on one store, checks spread over them round robin,
    /// failing over within --service-control-check-timeout; one that keeps failing is ejected
    /// for a while. Required when a method needs an API key (`usage.rules`).
    #[arg(long, value_name = "URL")]
    service_control_url: Vec<String>,
    /// Budget of one API-key check, every attempt at every key server included; each attempt
    /// gets an equal share of what is left. Past it the key server counts as unreachable.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration::SERVICE_CONTROL_CHECK_TIMEOUT.parser())]
    service_control_check_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for an `https` --service-control-url, on top of the
    /// system roots (a key server with a private CA: `iam serve --tls-cert`).
    #[arg(long, value_name = "FILE")]
    service_control_ca: Option<PathBuf>,
    /// The proxy's service account key file (Google's JSON, as `esprit iam keys create`
    /// writes; ESP's flag): every check carries a one-hour JWT it signs (re-signed 5 minutes
    /// before expiry). The key server (`iam serve --check-auth required`) answers only if the
    /// account holds roles/servicemanagement.serviceController on services/SERVICE. Read once
    /// at start; a file that cannot sign is refused then.
    #[arg(long, value_name = "FILE")]
    service_account_key: Option<PathBuf>,
    /// Allow a plain `http://` --service-control-url whose host is not loopback (127.0.0.0/8,
    /// ::1, localhost). Without it such a URL is refused at start: the checks carry API keys.
    #[arg(long)]
    service_control_allow_insecure_http: bool,
    /// How long a key found valid is trusted without asking again; keys found invalid are
    /// remembered for at most 60 s of it, so a newly created key works soon.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration::API_KEY_CACHE_DURATION.parser())]
    api_key_cache_duration: Duration,
    /// Let calls through when the key server cannot be reached (ESP's choice). By default
    /// esprit answers UNAVAILABLE; keys already cached as valid keep working either way.
    #[arg(long)]
    service_control_fail_open: bool,
    /// Accept service config sections esprit does not enforce (quota, backend routing, …),
    /// logging each one it ignores. Without it they are refused.
    #[arg(long)]
    allow_unenforced_config: bool,
    /// Key-server checks outstanding at once (1 to 65536). A call that needs a check past this
    /// cap is refused with UNAVAILABLE, never let through, even with --service-control-fail-open.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    service_control_max_pending_checks: u32,
    /// Proxies in front of this one whose `X-Forwarded-For` entries are trusted (Envoy's
    /// `xff_num_trusted_hops`). 0: the TCP peer is the client and every client-sent entry is
    /// dropped.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=16))]
    xff_num_trusted_hops: u8,
    /// Access-log lines per second for calls the proxy rejects itself (a bucket of one second's
    /// worth); the rest are counted in a summary line once a second. Forwarded calls always get
    /// their line. 0 logs no rejected call individually.
    #[arg(long, value_name = "N", default_value_t = proxy::AccessLogSettings::default().rejected_per_second, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    access_log_rejected_per_second: u32,
    /// Log lines queued for stderr at most; when stderr is slower than that, further lines are
    /// dropped (and counted), never waited for.
    #[arg(long, value_name = "N", default_value_t = crate::logging::DEFAULT_BUFFER_LINES, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    log_buffer_lines: u32,
    /// Log format: one JSON object per line, or text.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the admin pages (/metrics, /healthz, /readyz, /config) on this address, apart from
    /// the data listener: HOST:PORT, or a bare PORT for 127.0.0.1:PORT. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = admin::parse_admin_listen)]
    admin_listen: Option<SocketAddr>,
    /// /readyz does not wait for every JWT provider's key set to be fetched once.
    #[arg(long, requires = "admin_listen")]
    readyz_skip_keys: bool,
    /// Poll the backend's grpc.health.v1.Health/Check; /readyz and the --healthz path answer
    /// 503 while it is not SERVING (ESPv2's --health_check_grpc_backend).
    #[arg(long)]
    health_check_grpc_backend: bool,
    /// Time between two backend health checks (each times out after it, at most 5 s).
    #[arg(long, value_name = "DURATION", default_value = "1s", requires = "health_check_grpc_backend", value_parser = duration::HEALTH_CHECK_INTERVAL.parser())]
    health_check_grpc_backend_interval: Duration,
    /// The service name the backend health check asks about; empty: the whole server.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "",
        requires = "health_check_grpc_backend"
    )]
    health_check_grpc_backend_service: String,
    /// Reload the service config and descriptor files when their content changes (polled every
    /// --watch-config-interval). SIGHUP reloads them whether or not this is given.
    #[arg(long)]
    watch_config: bool,
    /// How often --watch-config reads the files (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "1s", requires = "watch_config", value_parser = duration::WATCH_CONFIG_INTERVAL.parser())]
    watch_config_interval: Duration,
    /// Export one span per call over OTLP/HTTP protobuf to this URL (`http://HOST:4318`, or
    /// a full URL with its path; without a path `/v1/traces` is used). Off by default: then
    /// trace headers are neither read nor written.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<proxy::OtlpEndpoint>,
    /// The share of calls without a valid incoming `traceparent` that start a sampled trace
    /// (0.0 to 1.0; ESPv2's default). A caller's `sampled` flag is followed either way.
    #[arg(long, value_name = "R", default_value_t = proxy::TracingSettings::DEFAULT_SAMPLE_RATE,
          requires = "otlp_endpoint", value_parser = parse_sample_rate)]
    tracing_sample_rate: f64,
    #[command(flatten)]
    cors: CorsArgs,
    #[command(flatten)]
    transcoding: TranscodingArgs,
    /// Answer gRPC server reflection (grpc.reflection.v1 and v1alpha) from the descriptor this
    /// proxy enforces, listing only the API's services (`grpcurl list` / `describe` through the
    /// proxy). Never forwarded to the backend. Off by default, as ESP forwards nothing outside
    /// the API.
    #[arg(long)]
    reflection: bool,
    /// The method (selector, e.g. `pkg.Service.Method`) whose JWT and API-key rules reflection
    /// calls must pass; default: the API's first method.
    #[arg(long, value_name = "SELECTOR", requires = "reflection")]
    reflection_rules_of: Option<String>,
}

/// A ratio from 0.0 to 1.0.
fn parse_sample_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a number from 0.0 to 1.0".to_owned()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::logging::init(args.log_format, args.log_buffer_lines);
    let options =
        service_config::LoadOptions::default().allow_unenforced(args.allow_unenforced_config);
    let config = service_config::load_with(&args.service_config, &args.descriptor, options)
        .with_context(|| {
            format!(
                "loading service config from {}",
                args.service_config.display()
            )
        })?;
    for section in config.ignored_sections() {
        tracing::warn!(
            section = %section,
            "service config section ignored: esprit does not enforce it (--allow-unenforced-config)"
        );
    }
    tracing::info!(
        service = config.name(),
        config_id = %config.id(),
        methods = config.methods().len(),
        providers = config.providers().len(),
        "service config loaded"
    );

    let mut settings = proxy::ProxySettings::new(args.listen, args.backend);
    settings.config_files = Some(proxy::ConfigFiles::new(
        args.service_config.clone(),
        args.descriptor.clone(),
        options,
    ));
    settings.watch_config = args.watch_config.then_some(args.watch_config_interval);
    settings.backend_ca = args.backend_ca;
    settings.backend_connect_timeout = args.backend_connect_timeout;
    settings.backend_connections = usize::from(args.backend_connections);
    settings.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(proxy::TlsFiles { cert, key }),
        _ => None,
    };
    settings.healthz = args.healthz;
    settings.drain_timeout = args.drain_timeout;
    settings.http2.max_concurrent_streams = args.http2_max_concurrent_streams;
    args.connections.apply(&mut settings.connections);
    settings.stream_idle_timeout = args.stream_idle_timeout;
    settings.auth.clock_skew = args.clock_skew;
    settings.auth.jwt_cache_size = args.jwt_cache_size;
    settings.auth.jwks.cache_duration = args.jwks_cache_duration;
    settings.auth.jwks.max_stale = args.jwks_max_stale;
    settings.auth.jwks.refetch_interval = args.jwks_refetch_interval;
    settings.auth.jwks.refetch_limit = args.jwks_refetch_limit;
    settings.auth.jwks.fetch_timeout = args.jwks_fetch_timeout;
    settings.auth.jwks.extra_ca = args.jwks_ca;
    settings.api_keys.service_control_urls = args.service_control_url;
    settings.api_keys.check_timeout = args.service_control_check_timeout;
    settings.api_keys.service_control_ca = args.service_control_ca;
    if let Some(path) = &args.service_account_key {
        let credentials = proxy::CallerCredentials::load(path).map_err(anyhow::Error::msg)?;
        // The account, never the key.
        tracing::info!(
            account = credentials.email(),
            "key server checks signed as this service account"
        );
        settings.api_keys.service_account_key = Some(std::sync::Arc::new(credentials));
    }
    settings.api_keys.allow_insecure_http = args.service_control_allow_insecure_http;
    settings.api_keys.cache_valid = args.api_key_cache_duration;
    settings.api_keys.cache_invalid = args.api_key_cache_duration.min(Duration::from_secs(60));
    settings.api_keys.max_pending_checks = args.service_control_max_pending_checks as usize;
    settings.xff_num_trusted_hops = args.xff_num_trusted_hops;
    settings.access_log.rejected_per_second = args.access_log_rejected_per_second;
    if let Some(listen) = args.admin_listen {
        let mut admin = proxy::AdminSettings::new(listen);
        admin.ready_requires_keys = !args.readyz_skip_keys;
        admin.config_sources = settings
            .config_files
            .as_ref()
            .map(proxy::ConfigFiles::sources)
            .unwrap_or_default();
        settings.admin = Some(admin);
    }
    if args.health_check_grpc_backend {
        settings.backend_health = Some(proxy::BackendHealthCheck {
            interval: args.health_check_grpc_backend_interval,
            service: args.health_check_grpc_backend_service,
        });
    }
    if let Some(endpoint) = args.otlp_endpoint {
        let mut tracing = proxy::TracingSettings::new(endpoint);
        tracing.sample_rate = args.tracing_sample_rate;
        settings.tracing = Some(tracing);
    }
    settings.cors = args.cors.settings();
    settings.transcoding = args.transcoding.settings();
    if args.reflection {
        settings.reflection = Some(proxy::ReflectionSettings {
            rules_of: args.reflection_rules_of,
        });
    }
    if args.service_control_fail_open {
        settings.api_keys.on_unreachable = proxy::OnUnreachable::FailOpen;
    }

    settings.workers = match args.worker_threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    // Every worker is a single-threaded runtime (no work stealing: a call stays on the thread
    // that accepted its connection); this one is the first, and also accepts and runs the
    // background tasks. The proxy starts the others.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let proxy = proxy::Proxy::bind(&config, settings)
            .await
            .with_context(|| format!("starting the proxy for {}", args.service_config.display()))?;
        let shutdown = crate::signals::terminated();
        let _reloads = crate::signals::on_hangup(proxy.reloader());
        let admin = proxy.admin_addr().map(|addr| addr.to_string());
        tracing::info!(listen = %proxy.local_addr(), admin, "listening");
        let drained = proxy.serve(shutdown).await;
        if !drained {
            tracing::warn!("exiting with calls still in flight after the drain timeout");
        }
        Ok(ExitCode::SUCCESS)
    })
}
