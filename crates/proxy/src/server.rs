//! The listener: accepts connections, speaks h2c / HTTP/1.1 / TLS, drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ProxyError;
use crate::handler::{self, State};
use crate::routes::RouteTable;
use crate::settings::ProxySettings;

/// A bound, not yet serving, proxy. Binding first lets callers (and tests) learn the address
/// of a `:0` listener before calls arrive.
pub struct Proxy {
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    drain_timeout: Duration,
    admission: Arc<conn_guard::Admission>,
}

impl Proxy {
    /// Validates that every check the config asks for can be made, starts fetching key sets in
    /// the background (the listener does not wait for them), and binds the listener.
    pub async fn bind(
        config: &service_config::ServiceConfig,
        settings: ProxySettings,
    ) -> Result<Self, ProxyError> {
        let routes = RouteTable::from_config(config, &settings)?;
        let tls = match &settings.tls {
            Some(files) => Some(tls_acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let backend = crate::backend::BackendPool::new(&settings)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let state = Arc::new(State {
            routes,
            backend,
            backend_url: settings.backend.clone(),
            healthz: settings.healthz.clone(),
            draining: Default::default(),
            forwarding: crate::headers::Forwarding {
                trusted_hops: usize::from(settings.xff_num_trusted_hops),
                tls: settings.tls.is_some(),
            },
            rejected_lines: crate::access_log::RejectedLines::new(settings.access_log),
        });
        Ok(Self {
            listener,
            state,
            tls,
            builder: connection_builder(&settings),
            drain_timeout: settings.drain_timeout,
            admission: conn_guard::Admission::new(settings.connections, "proxy"),
        })
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
        } = self;
        let builder = Arc::new(builder);
        let drain = conn_guard::Drain::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Over a connection limit: closed at once (the refusal is logged, rate-limited).
            let Some(permit) = admission.try_admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let conn_state = conn_guard::ConnState::new(*admission.limits());
            let state = state.clone();
            let service = conn_guard::track(conn_state.clone(), {
                let peer = crate::headers::Peer::new(peer);
                service_fn(move |req| handler::handle(state.clone(), peer.clone(), req))
            });
            let builder = builder.clone();
            let watcher = drain.watcher();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        conn_guard::drive(conn, conn_state, watcher, Some(permit)).await;
                    }
                    Some(acceptor) => {
                        // The handshake counts against the deadline for the first request.
                        let handshake = tokio::time::timeout_at(
                            conn_state.first_request_deadline(),
                            acceptor.accept(stream),
                        );
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!(error = %err, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
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
        match tokio::time::timeout(drain_timeout, drain.shutdown()).await {
            Ok(()) => {
                tracing::info!("drained");
                true
            }
            Err(_) => {
                tracing::warn!("drain timeout reached with calls still in flight");
                false
            }
        }
    }
}

fn connection_builder(settings: &ProxySettings) -> auto::Builder<TokioExecutor> {
    let limits = &settings.http2;
    let mut builder = auto::Builder::new(TokioExecutor::new());
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
) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let pem = std::fs::read(path).map_err(|source| ProxyError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProxyError::BadPem {
            what,
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ProxyError::BadPem {
            what,
            path: path.to_owned(),
            problem: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ProxyError> {
    let certs = read_certs(cert, "TLS certificate")?;
    let key_pem = std::fs::read(key).map_err(|source| ProxyError::ReadFile {
        what: "TLS key",
        path: key.to_owned(),
        source,
    })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ProxyError::BadPem {
        what: "TLS key",
        path: key.to_owned(),
        problem: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ProxyError::Tls)?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(ProxyError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
