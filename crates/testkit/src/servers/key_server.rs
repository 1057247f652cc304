//! esprit's key server (`iam serve`, in this process) on `127.0.0.1:0`, in each of the shapes
//! the tests need: plain, with limits, over TLS, with check authentication, on a pool, with a
//! token service.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::listener;

/// The key server (`iam::serve`, `serve_with` or `serve_pool`) on a background task; dropping
/// it stops the server.
pub struct KeyServer {
    pub addr: SocketAddr,
    /// Serving TLS ([`KeyServer::start_tls`]): [`KeyServer::url`] is `https://`.
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<iam::Result<()>>,
}

impl KeyServer {
    /// `iam::serve` on the store at `store` (a SQLite file's path or a [`iam::StoreLocation`]).
    pub async fn start(store: impl Into<iam::StoreLocation>) -> KeyServer {
        Self::start_with(store, iam::ConnectionLimits::default()).await
    }

    /// `iam::serve_with` on the store at `store`, with these connection limits.
    pub async fn start_with(
        store: impl Into<iam::StoreLocation>,
        limits: iam::ConnectionLimits,
    ) -> KeyServer {
        let store: iam::StoreLocation = store.into();
        Self::spawn(|listener, stopped| async move {
            iam::serve_with(listener, store, limits, stopped).await
        })
        .await
    }

    /// `iam::serve_observed` over TLS with the certificate chain `cert` and its key `key` (PEM
    /// files), on the store file at `store`; [`KeyServer::url`] is `https://ADDR`.
    pub async fn start_tls(
        store: impl Into<iam::StoreLocation>,
        cert: &Path,
        key: &Path,
    ) -> KeyServer {
        let acceptor = iam::tls::acceptor(cert, key).unwrap();
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        let mut server = Self::spawn(|listener, stopped| {
            iam::serve_observed(
                listener,
                pool,
                None,
                iam::ConnectionLimits::default(),
                None,
                Some(acceptor),
                iam::CheckAuth::Off,
                stopped,
            )
        })
        .await;
        server.tls = true;
        server
    }

    /// `iam::serve_observed` with `auth` for API-key checks (`iam::CheckAuth::Required`: only
    /// authenticated callers holding the Service Controller role), on the store at `store`;
    /// with `tokens` (a token service on the same store) its access tokens are accepted too.
    pub async fn start_checked(
        store: impl Into<iam::StoreLocation>,
        tokens: Option<iam::TokenService>,
        auth: iam::CheckAuth,
    ) -> KeyServer {
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        Self::spawn(|listener, stopped| {
            iam::serve_observed(
                listener,
                pool,
                tokens,
                iam::ConnectionLimits::default(),
                None,
                None,
                auth,
                stopped,
            )
        })
        .await
    }

    /// `iam::serve_pool` on an open pool of store connections.
    pub async fn start_pool(pool: Arc<iam::StorePool>) -> KeyServer {
        Self::spawn(|listener, stopped| {
            iam::serve_pool(listener, pool, iam::ConnectionLimits::default(), stopped)
        })
        .await
    }

    /// `iam::serve_tokens`: the key server with a token service whose issuer URL is the
    /// server's own `http://ADDR`. `settings` gets that URL and returns the token service's
    /// settings (KEK, rotation, clock); the token service is returned too, for direct calls.
    pub async fn start_tokens(
        store: impl Into<iam::StoreLocation>,
        settings: impl FnOnce(String) -> iam::TokenServiceSettings,
    ) -> (KeyServer, iam::TokenService) {
        let store: iam::StoreLocation = store.into();
        let listener = listener().await;
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tokens = iam::TokenService::open(&store, settings(url)).unwrap();
        let pool = iam::StorePool::open(store, iam::PoolSettings::default()).unwrap();
        let service = tokens.clone();
        let server = Self::spawn_on(listener, |listener, stopped| {
            iam::serve_tokens(
                listener,
                pool,
                Some(service),
                iam::ConnectionLimits::default(),
                stopped,
            )
        });
        (server, tokens)
    }

    async fn spawn<S, F>(serve: S) -> KeyServer
    where
        S: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = iam::Result<()>> + Send + 'static,
    {
        Self::spawn_on(listener().await, serve)
    }

    fn spawn_on<S, F>(listener: TcpListener, serve: S) -> KeyServer
    where
        S: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
        F: Future<Output = iam::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Box::pin(async {
                let _ = stopped.await;
            }),
        ));
        KeyServer {
            addr,
            tls: false,
            stop: Some(stop),
            task,
        }
    }

    /// `http://ADDR` (`https://ADDR` with TLS): the base URL of the key server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Tells the server to stop, without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and fails the test unless it ended cleanly.
    pub async fn stop(mut self) {
        self.signal_stop();
        (&mut self.task).await.unwrap().unwrap();
    }
}
