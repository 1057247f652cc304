//! TLS for both servers: the certificate and key loader (`--tls-cert`/`--tls-key`) and the
//! handshake under the first-request deadline. rustls with aws-lc-rs, ALPN `h2` then `http/1.1`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why a certificate, key or CA file could not be used. The messages are shown to operators.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("reading {what} from {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} in {path}: {problem}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
}

/// The PEM certificates in `path` (at least one); `what` names the file in errors.
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(what, path, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_pem(what, path, "no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A TLS acceptor serving the chain in `cert` with the key (PKCS#8, PKCS#1 or SEC1) in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsFileError> {
    let certs = read_certs(cert, "TLS certificate")?;
    let key_pem = read(key, "TLS key")?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad_pem("TLS key", key, e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsFileError::Tls)?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(TlsFileError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS handshake, bounded by `deadline` (the connection's first-request deadline: the
/// handshake counts against it). `None` when it failed or timed out (logged at debug).
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &Path, problem: String) -> TlsFileError {
    TlsFileError::BadPem {
        what,
        path: path.to_owned(),
        problem,
    }
}
