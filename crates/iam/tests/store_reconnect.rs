//! A PostgreSQL store whose server ended its sessions (a restart, a failover, an
//! administrator): the next use connects again, for a plain store, for the key server's pool and
//! for the token service's connection; nothing that should succeed fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use iam::{Kek, PoolSettings, Store, StorePool, TokenService, TokenServiceSettings};
use testkit::{KeyServer, TestStore, http1};

const NOW: u64 = 1_750_000_000;

/// Ends every other session on the test's database, as a server restart does.
fn end_sessions(ts: &TestStore) {
    ts.execute_raw(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_by_the_server_are_made_again() {
    let ts = TestStore::postgres();
    let mut store = Store::open(ts.location()).unwrap();
    let account = store
        .create_account("still-here", "my-project", NOW)
        .unwrap();
    let (key, _) = store.create_api_key("my-project", None, NOW).unwrap();
    let pool = StorePool::open(ts.location(), PoolSettings::default()).unwrap();
    let server = KeyServer::start_pool(Arc::clone(&pool)).await;
    let tokens = TokenService::open(
        ts.location(),
        TokenServiceSettings::new("http://iam.test", Kek::generate().unwrap()),
    )
    .unwrap();
    let check = || async {
        let body = serde_json::json!({ "api_key": key }).to_string();
        http1(
            server.addr,
            "POST",
            "/v1/services/bookstore.endpoints.my-project.cloud.goog:check",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await
    };
    assert_eq!(check().await.status, 200);

    for _ in 0..2 {
        end_sessions(&ts);
        // The plain store: reads and writes.
        assert_eq!(store.accounts().unwrap(), vec![account.clone()]);
        store
            .create_api_key("my-project", Some("after"), NOW)
            .unwrap();
        // A write transaction.
        let id = store.api_keys(None).unwrap().pop().unwrap().id;
        end_sessions(&ts);
        store.revoke_api_key(&id, NOW).unwrap();
        // The key server's pool.
        let reply = check().await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains("\"valid\":true"), "{}", reply.body);
        // The token service.
        tokens.issue_id_token(&account, "aud", false).unwrap();
    }
    server.stop().await;
}
