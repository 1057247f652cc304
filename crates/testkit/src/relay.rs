//! A TCP relay in front of a server (a PostgreSQL server's TCP port or Unix socket), which the
//! test can cut: the server then looks stopped (connections refused at once) or unreachable
//! (connections accepted and never answered, as behind a dropped route) to whatever connects
//! through the relay, while the server itself keeps serving every other test.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

/// Where the relay connects.
#[derive(Clone, Debug)]
pub enum RelayTarget {
    Tcp(SocketAddr),
    /// A Unix socket file (PostgreSQL's `DIR/.s.PGSQL.PORT`).
    Unix(PathBuf),
}

/// What the relay does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// Relays bytes both ways.
    Pass,
    /// Closes every connection as soon as it is accepted (a stopped server: the client reads
    /// end-of-file at once).
    Refuse,
    /// Accepts connections and never sends a byte (a server that hangs, a dropped route).
    Hang,
}

/// A running relay on a free port of 127.0.0.1; stops with the runtime or when dropped.
pub struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<RelayMode>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `target` ([`RelayMode::Pass`]).
    pub async fn start(target: RelayTarget) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watch) = watch::channel(RelayMode::Pass);
        let task = tokio::spawn(async move {
            let mut watch = watch;
            while let Ok((client, _)) = listener.accept().await {
                // Marked seen here, so the clone waits for the next change.
                let now = *watch.borrow_and_update();
                let watch = watch.clone();
                let target = target.clone();
                match now {
                    RelayMode::Refuse => drop(client),
                    RelayMode::Hang => {
                        tokio::spawn(hold(client, watch));
                    }
                    RelayMode::Pass => {
                        tokio::spawn(async move {
                            match target {
                                RelayTarget::Tcp(addr) => {
                                    if let Ok(server) = TcpStream::connect(addr).await {
                                        pipe(client, server, watch).await;
                                    }
                                }
                                RelayTarget::Unix(path) => {
                                    if let Ok(server) = UnixStream::connect(path).await {
                                        pipe(client, server, watch).await;
                                    }
                                }
                            }
                        });
                    }
                }
            }
        });
        Relay { addr, mode, task }
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode. Every connection open through the relay (relayed or held) is closed,
    /// as a server's restart or a cut route ends them.
    pub fn set(&self, mode: RelayMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Holds `client` open, unanswered, until the mode changes.
async fn hold(client: TcpStream, mut watch: watch::Receiver<RelayMode>) {
    let _ = watch.changed().await;
    drop(client);
}

/// Relays until either side closes or the mode changes.
async fn pipe<S>(mut client: TcpStream, mut server: S, mut watch: watch::Receiver<RelayMode>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = watch.changed() => {}
    }
}
