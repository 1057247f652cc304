//! The connection pool towards the one backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::ProxyError;
use crate::request_body::RequestBody;
use crate::settings::ProxySettings;

pub(crate) type BackendClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

/// `backend_connections` independent clients, each multiplexing its calls over one HTTP/2
/// connection, used in turn. More than one spreads many concurrent calls past a backend's
/// per-connection stream limit; one batches best.
pub(crate) struct BackendPool {
    clients: Box<[BackendClient]>,
    next: AtomicUsize,
}

impl BackendPool {
    pub(crate) fn new(settings: &ProxySettings) -> Result<Self, ProxyError> {
        let clients = (0..settings.backend_connections.max(1))
            .map(|_| client(settings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: clients.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })
    }

    pub(crate) fn pick(&self) -> &BackendClient {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }
}

fn client(settings: &ProxySettings) -> Result<BackendClient, ProxyError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.backend_connect_timeout));

    let roots = if settings.backend.tls {
        backend_roots(settings)?
    } else {
        // h2c: the TLS configuration is never used.
        rustls::RootCertStore::empty()
    };
    // ALPN (h2) is set by the connector builder below.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ProxyError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);

    let limits = &settings.http2;
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_initial_stream_window_size(limits.initial_stream_window_size)
        .http2_initial_connection_window_size(limits.initial_connection_window_size)
        .http2_max_header_list_size(limits.max_header_list_size)
        .http2_keep_alive_interval(limits.keep_alive_interval)
        .http2_keep_alive_timeout(limits.keep_alive_timeout)
        .build(connector))
}

fn backend_roots(settings: &ProxySettings) -> Result<rustls::RootCertStore, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.backend_ca {
        Some(path) => {
            for cert in crate::server::read_certs(path, "backend CA")? {
                roots.add(cert).map_err(ProxyError::Tls)?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                // Unparseable system certificates are skipped, as every rustls user does.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ProxyError::NoRootCertificates);
            }
        }
    }
    Ok(roots)
}
