//! The listener: accepts connections, speaks h2c / HTTP/1.1 / TLS, drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conn_guard::tls::TlsAcceptor;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::ProxyError;
use crate::exec::BoxingExecutor;
use crate::handler::{self, State};
use crate::health::{BackendHealth, ProxyReadiness, health_endpoint};
use crate::metrics::{ProxyMetrics, ScrapeCollector};
use crate::reload::Reloader;
use crate::routes::RouteTable;
use crate::settings::ProxySettings;

/// A bound, not yet serving, proxy. Binding first lets callers (and tests) learn the address
/// of a `:0` listener before calls arrive.
pub struct Proxy {
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<BoxingExecutor>,
    drain_timeout: Duration,
    admission: Arc<conn_guard::Admission>,
    admin: Option<admin::AdminServer>,
    active_config: Option<admin::ActiveConfig>,
    /// Set once the accept loop runs (`/readyz`'s listener check).
    accepting: Arc<AtomicBool>,
    /// The backend health poller, started with the accept loop.
    health_poll: Option<(
        tonic::transport::Endpoint,
        crate::settings::BackendHealthCheck,
    )>,
    reloader: Reloader,
    /// The threads serving connections besides the serving runtime.
    workers: crate::workers::Workers,
    /// `--watch-config`'s interval, when set and there are files to watch.
    watch_config: Option<Duration>,
}

impl Proxy {
    /// Validates that every check the config asks for can be made, starts fetching key sets in
    /// the background (the listener does not wait for them), and binds the listener.
    pub async fn bind(
        config: &service_config::ServiceConfig,
        settings: ProxySettings,
    ) -> Result<Self, ProxyError> {
        let mut registry = settings
            .admin
            .as_ref()
            .map(|_| prometheus_client::registry::Registry::default());
        let metrics = registry.as_mut().map(ProxyMetrics::register);
        let routes = RouteTable::from_config(config, &settings, metrics.as_deref(), None)?;
        let tls = match &settings.tls {
            Some(files) => Some(conn_guard::tls::acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let workers = crate::workers::Workers::start(settings.workers)?;
        let backend = crate::workers::PerWorker::new(settings.workers, |_| {
            crate::backend::BackendPool::new(&settings).map(Arc::new)
        })?;
        let tracing = match &settings.tracing {
            Some(tracing) => Some(
                crate::call_trace::Tracing::new(tracing, config.name())
                    .map_err(|err| ProxyError::Tracing(err.to_string()))?,
            ),
            None => None,
        };
        let cors = match &settings.cors {
            Some(cors) => Some(crate::cors::CorsPolicy::new(cors)?),
            None => None,
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let state = Arc::new(State {
            routes: arc_swap::ArcSwap::from_pointee(routes),
            backend,
            backend_url: settings.backend.clone(),
            healthz: settings.healthz.clone(),
            draining: Default::default(),
            forwarding: crate::headers::Forwarding {
                trusted_hops: usize::from(settings.xff_num_trusted_hops),
                tls: settings.tls.is_some(),
            },
            rejected_lines: crate::access_log::RejectedLines::new(settings.access_log),
            metrics,
            backend_health: settings
                .backend_health
                .as_ref()
                .map(|_| Arc::new(BackendHealth::default())),
            tracing,
            cors,
            preflight_to_backend: config.allow_cors(),
        });
        let health_poll = match &settings.backend_health {
            Some(check) => Some((health_endpoint(&settings)?, check.clone())),
            None => None,
        };
        let admission = conn_guard::Admission::new(settings.connections, "proxy");
        let accepting = Arc::new(AtomicBool::new(false));
        let (admin, active_config) = match (&settings.admin, registry) {
            (Some(admin_settings), Some(mut registry)) => {
                registry.register_collector(Box::new(ScrapeCollector {
                    admission: admission.clone(),
                    state: state.clone(),
                }));
                registry.register_collector(Box::new(admin::process::ProcessCollector));
                let active = admin::ActiveConfig::new(admin::ConfigInfo {
                    id: config.id().as_str().to_owned(),
                    sources: admin_settings.config_sources.clone(),
                    loaded_at: settings.clock.now(),
                });
                registry.register_collector(Box::new(active.clone()));
                let readiness = ProxyReadiness {
                    state: state.clone(),
                    accepting: accepting.clone(),
                    require_keys: admin_settings.ready_requires_keys,
                    keys_ready_once: AtomicBool::new(false),
                };
                let server = admin::AdminServer::bind(
                    admin_settings.listen,
                    admin::LIMITS,
                    admin::AdminState {
                        registry,
                        readiness: Arc::new(readiness),
                        config: active.clone(),
                    },
                )
                .await?;
                (Some(server), Some(active))
            }
            _ => (None, None),
        };
        let watch_config = settings
            .watch_config
            .filter(|_| settings.config_files.is_some());
        let reloader = Reloader::new(state.clone(), settings.clone(), active_config.clone());
        Ok(Self {
            listener,
            state,
            tls,
            builder: connection_builder(&settings),
            drain_timeout: settings.drain_timeout,
            admission,
            admin,
            active_config,
            accepting,
            health_poll,
            reloader,
            workers,
            watch_config,
        })
    }

    /// Swaps in new configurations while serving (SIGHUP, `--watch-config`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The admin listener's address, when `--admin-listen` was given.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(admin::AdminServer::local_addr)
    }

    /// The configuration `/config` shows; a reload replaces it with [`admin::ActiveConfig::set`].
    pub fn active_config(&self) -> Option<admin::ActiveConfig> {
        self.active_config.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight calls finish for up
    /// to the drain timeout, and returns. Returns `true` if every call finished in time.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> bool {
        let Proxy {
            listener,
            state,
            tls,
            builder,
            drain_timeout,
            admission,
            admin,
            active_config: _,
            accepting,
            health_poll,
            reloader,
            workers,
            watch_config,
        } = self;
        // The admin listener outlives the drain (`/readyz` says DRAINING meanwhile).
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = admin.map(|server| {
            tokio::spawn(server.serve(async {
                let _ = admin_stopped.await;
            }))
        });
        let poller = match (health_poll, &state.backend_health) {
            (Some((endpoint, check)), Some(health)) => Some(AbortOnDrop(tokio::spawn(
                crate::health::poll(endpoint, check, health.clone()),
            ))),
            _ => None,
        };
        let config_watch =
            watch_config.map(|interval| AbortOnDrop(tokio::spawn(reloader.watch(interval))));
        accepting.store(true, Ordering::Relaxed);
        let builder = Arc::new(builder);
        let drain = conn_guard::Drain::new();
        tokio::pin!(shutdown);
        // Over a connection limit: closed at once (the refusal is logged, rate-limited).
        while let Some(conn_guard::Admitted {
            stream,
            peer,
            permit,
        }) = admission.accept(&listener, &mut shutdown).await
        {
            let _ = stream.set_nodelay(true);
            let conn_state = conn_guard::ConnState::new(*admission.limits());
            let state = state.clone();
            let service = conn_guard::track(conn_state.clone(), {
                let peer = crate::headers::Peer::new(peer);
                // The call's future comes boxed (`handler::handle`).
                service_fn(move |req| handler::handle(&state, &peer, req))
            });
            let builder = builder.clone();
            let watcher = drain.watcher();
            let tls = tls.clone();
            workers.spawn(stream, move |stream| async move {
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        conn_guard::drive(conn, conn_state, watcher, Some(permit)).await;
                    }
                    Some(acceptor) => {
                        let deadline = conn_state.first_request_deadline();
                        let Some(stream) =
                            conn_guard::tls::handshake(&acceptor, stream, deadline, peer).await
                        else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        conn_guard::drive(conn, conn_state, watcher, Some(permit)).await;
                    }
                }
            });
        }
        drop(listener);
        state.draining.store(true, Ordering::Relaxed);
        tracing::info!(connections = drain.count(), timeout = ?drain_timeout, "draining");
        let drained = match tokio::time::timeout(drain_timeout, drain.shutdown()).await {
            Ok(()) => {
                tracing::info!("drained");
                true
            }
            Err(_) => {
                tracing::warn!("drain timeout reached with calls still in flight");
                false
            }
        };
        workers.stop().await;
        drop(poller);
        drop(config_watch);
        // Every call has ended (or the drain gave up): their spans are queued; export them.
        if let Some(tracing) = &state.tracing {
            tracing.shutdown().await;
        }
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        drained
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn connection_builder(settings: &ProxySettings) -> auto::Builder<BoxingExecutor> {
    let limits = &settings.http2;
    let mut builder = auto::Builder::new(BoxingExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.connections.request_header_timeout)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams)
        .initial_stream_window_size(limits.initial_stream_window_size)
        .initial_connection_window_size(limits.initial_connection_window_size)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

pub(crate) fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ProxyError> {
    Ok(conn_guard::tls::read_certs(path, what)?)
}
