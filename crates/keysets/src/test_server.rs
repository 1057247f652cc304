//! A local key server over real sockets, for tests (feature `testing`): this crate's and the
//! proxy's end-to-end tests.
//!
//! It listens on `127.0.0.1:0` (plain HTTP or TLS with a throw-away CA), serves whatever
//! [`Reply`] a test sets per path (key sets, errors, redirects, slow or endless bodies),
//! counts requests per path, and can go down (stop listening, drop connections) and come
//! back on the same port. Helpers render key sets in the three formats ESP accepts.
//! Not for production: it has no limits and trusts its caller.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, channel::Channel};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, LOCATION};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// What the server answers on a path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete body (sent with `Content-Length`).
    Body {
        /// HTTP status.
        status: u16,
        /// `Content-Type`.
        content_type: &'static str,
        /// The body.
        body: Bytes,
    },
    /// A redirect to `location`.
    Redirect {
        /// 301, 302, 307 or 308.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// Waits `delay` before answering `then`.
    Slow {
        /// The wait before the response headers.
        delay: Duration,
        /// The answer after the wait.
        then: Box<Reply>,
    },
    /// 200 with a chunked body (no `Content-Length`) of `count` copies of `chunk`.
    Stream {
        /// One chunk.
        chunk: Bytes,
        /// How many chunks.
        count: usize,
    },
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Reply {
        Reply::Body {
            status: 200,
            content_type: "application/json",
            body: Bytes::from(body.into()),
        }
    }

    /// 200 with a PEM body.
    pub fn pem(body: impl Into<String>) -> Reply {
        Reply::Body {
            status: 200,
            content_type: "application/x-pem-file",
            body: Bytes::from(body.into()),
        }
    }

    /// `status` with a short text body.
    pub fn status(status: u16) -> Reply {
        Reply::Body {
            status,
            content_type: "text/plain",
            body: Bytes::from(format!("status {status}\n")),
        }
    }

    /// 302 to `location`.
    pub fn redirect(location: impl Into<String>) -> Reply {
        Reply::Redirect {
            status: 302,
            location: location.into(),
        }
    }

    /// `then`, after `delay`.
    pub fn slow(delay: Duration, then: Reply) -> Reply {
        Reply::Slow {
            delay,
            then: Box::new(then),
        }
    }

    /// A chunked body of `total` bytes of spaces (valid JSON whitespace, so only a size
    /// cap stops it), in chunks of 16 KiB.
    pub fn endless_whitespace(total: usize) -> Reply {
        const CHUNK: usize = 16 * 1024;
        Reply::Stream {
            chunk: Bytes::from(vec![b' '; CHUNK]),
            count: total.div_ceil(CHUNK),
        }
    }
}

#[derive(Default)]
struct Shared {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// The server. Dropping it stops it.
pub struct KeyServer {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Mutex<Shared>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl KeyServer {
    /// Starts a plain HTTP server on `127.0.0.1:0`.
    pub async fn start() -> io::Result<KeyServer> {
        KeyServer::listen(None).await
    }

    /// Starts an HTTPS server on `127.0.0.1:0` with `pki`'s server certificate.
    pub async fn start_tls(pki: &TestPki) -> io::Result<KeyServer> {
        KeyServer::listen(Some(pki.acceptor()?)).await
    }

    async fn listen(tls: Option<TlsAcceptor>) -> io::Result<KeyServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let server = KeyServer {
            addr: listener.local_addr()?,
            tls,
            shared: Arc::default(),
            accept: Mutex::new(None),
        };
        server.spawn_accept(listener);
        Ok(server)
    }

    fn spawn_accept(&self, listener: TcpListener) {
        let shared = Arc::clone(&self.shared);
        let tls = self.tls.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task drops them all.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or similar: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        let mut accept = self.accept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = accept.replace(task) {
            old.abort();
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Sets the answer on `path`. Paths without one answer 404.
    pub fn set(&self, path: &str, reply: Reply) {
        self.lock().routes.insert(path.to_owned(), reply);
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// Goes down: stops listening (connections are refused) and drops open connections.
    pub async fn stop(&self) {
        let task = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Comes back up on the same port.
    pub async fn restart(&self) -> io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.spawn_accept(listener);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        let accept = self
            .accept
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = accept.take() {
            task.abort();
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    shared: Arc<Mutex<Shared>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        *shared.hits.entry(path.clone()).or_default() += 1;
        shared.routes.get(&path).cloned()
    };
    Ok(render(reply.unwrap_or_else(|| Reply::status(404))).await)
}

async fn render(mut reply: Reply) -> Response<Body> {
    while let Reply::Slow { delay, then } = reply {
        tokio::time::sleep(delay).await;
        reply = *then;
    }
    let mut response = Response::builder();
    let body = match reply {
        Reply::Body {
            status,
            content_type,
            body,
        } => {
            response = response.status(status).header(CONTENT_TYPE, content_type);
            Full::new(body).boxed()
        }
        Reply::Redirect { status, location } => {
            response = response.status(status).header(LOCATION, location);
            Full::new(Bytes::new()).boxed()
        }
        Reply::Stream { chunk, count } => {
            let (mut tx, body) = Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                for _ in 0..count {
                    if tx.send_data(chunk.clone()).await.is_err() {
                        break;
                    }
                }
            });
            response = response
                .status(200)
                .header(CONTENT_TYPE, "application/json");
            body.boxed()
        }
        Reply::Slow { .. } => Full::new(Bytes::new()).boxed(),
    };
    response.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Full::new(Bytes::new()).boxed());
        *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// A throw-away CA and a server certificate it signed for `localhost` and `127.0.0.1`.
pub struct TestPki {
    /// The CA certificate, PEM: what a client is told to trust (`extra_ca`).
    pub ca_pem: String,
    /// The server certificate, PEM (for a server under test: `--tls-cert`).
    pub server_cert_pem: String,
    /// The server certificate's private key, PKCS#8 PEM (`--tls-key`).
    pub server_key_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// Generates the CA and the server certificate (ECDSA P-256).
    pub fn generate() -> io::Result<TestPki> {
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "esprit test CA");
        let ca_key = KeyPair::generate().map_err(io::Error::other)?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(io::Error::other)?;
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(io::Error::other)?;
        let server_key = KeyPair::generate().map_err(io::Error::other)?;
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .map_err(io::Error::other)?;
        Ok(TestPki {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A JWKS `{"keys": [...]}` of the public keys, each with its kid.
pub fn jwks(keys: &[(&str, &jose::GeneratedKey)]) -> String {
    let keys: Vec<serde_json::Value> = keys.iter().map(|(kid, key)| key.public_jwk(kid)).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A JWKS holding one HMAC (`oct`, HS256) key.
pub fn hmac_jwks(kid: &str, secret: &[u8]) -> String {
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    serde_json::json!({ "keys": [{ "kty": "oct", "kid": kid, "alg": "HS256", "k": k }] })
        .to_string()
}

/// Google's form: a JSON map of kid to a PEM X.509 certificate of the key (self-signed).
pub fn x509_map(keys: &[(&str, &jose::GeneratedKey)]) -> io::Result<String> {
    let mut map = serde_json::Map::new();
    for (kid, key) in keys {
        let pair = KeyPair::from_pem(&key.private_pkcs8_pem).map_err(io::Error::other)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
        params.distinguished_name.push(DnType::CommonName, *kid);
        let cert = params.self_signed(&pair).map_err(io::Error::other)?;
        map.insert((*kid).to_owned(), cert.pem().into());
    }
    Ok(serde_json::Value::Object(map).to_string())
}

/// PEM `PUBLIC KEY` blocks of the keys, concatenated (keys without kids).
pub fn pem(keys: &[&jose::GeneratedKey]) -> String {
    keys.iter().map(|k| k.public_spki_pem.as_str()).collect()
}
