//! `esprit iam serve` under the same connection guards as the proxy, over real sockets.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use iam::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

const SOON: Duration = Duration::from_secs(10);

async fn start(
    store: &std::path::Path,
    limits: ConnectionLimits,
) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let store = store.to_owned();
    tokio::spawn(async move {
        iam::serve_with(listener, &store, limits, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

async fn peer_closes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(SOON, read_all).await.is_ok()
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// An HTTP/1.1 request on the connection is answered (404 for an unknown path).
async fn is_served(mut stream: TcpStream) -> bool {
    stream
        .write_all(b"GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = timeout(SOON, stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 404")
}

#[tokio::test]
async fn silent_sockets_partial_prefaces_and_idle_h2_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        request_header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    };
    let (addr, _stop) = start(&dir.path().join("iam.db"), limits).await;

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(peer_closes(&mut silent).await, "silent socket left open");
    assert!(peer_closes(&mut partial).await, "partial preface left open");

    // h2c: one request, then idle → GOAWAY and closed.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let mut conn = tokio::spawn(conn);
    let request = http::Request::get(format!("http://{addr}/nothing"))
        .body(())
        .unwrap();
    let (response, _) = send
        .ready()
        .await
        .unwrap()
        .send_request(request, true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 404);
    assert!(
        timeout(SOON, &mut conn).await.is_ok(),
        "idle h2 connection left open"
    );
}

#[tokio::test]
async fn connections_over_the_global_or_per_peer_limit_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        max_connections: 3,
        max_connections_per_peer: 2,
        ..ConnectionLimits::default()
    };
    let (addr, _stop) = start(&dir.path().join("iam.db"), limits).await;

    let a1 = connect_from("127.0.0.1", addr).await;
    let a2 = connect_from("127.0.0.1", addr).await;
    let mut a3 = connect_from("127.0.0.1", addr).await;
    assert!(peer_closes(&mut a3).await, "per-peer limit not enforced");
    let b1 = connect_from("127.0.0.2", addr).await;
    let mut b2 = connect_from("127.0.0.2", addr).await;
    assert!(peer_closes(&mut b2).await, "global limit not enforced");
    assert!(is_served(a1).await);
    assert!(is_served(a2).await);
    assert!(is_served(b1).await);
}
