//! `esprit iam serve` under the same connection guards as the proxy, over real sockets.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use iam::ConnectionLimits;
use testkit::{KeyServer, answers_get, connect_from, peer_closes};
use tokio::net::TcpStream;
use tokio::time::timeout;

const SOON: Duration = Duration::from_secs(10);

/// An HTTP/1.1 request on the connection is answered (404 for an unknown path).
async fn is_served(stream: TcpStream) -> bool {
    answers_get(stream, "/nothing", 404, SOON).await
}

#[tokio::test]
async fn silent_sockets_partial_prefaces_and_idle_h2_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        request_header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    };
    let server = KeyServer::start_with(&dir.path().join("iam.db"), limits).await;
    let addr = server.addr;

    testkit::assert_closes_silent_and_partial_preface(addr, SOON).await;

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
    let server = KeyServer::start_with(&dir.path().join("iam.db"), limits).await;
    let addr = server.addr;

    let a1 = connect_from("127.0.0.1", addr).await;
    let a2 = connect_from("127.0.0.1", addr).await;
    let mut a3 = connect_from("127.0.0.1", addr).await;
    assert!(
        peer_closes(&mut a3, SOON).await,
        "per-peer limit not enforced"
    );
    let b1 = connect_from("127.0.0.2", addr).await;
    let mut b2 = connect_from("127.0.0.2", addr).await;
    assert!(
        peer_closes(&mut b2, SOON).await,
        "global limit not enforced"
    );
    assert!(is_served(a1).await);
    assert!(is_served(a2).await);
    assert!(is_served(b1).await);
}
