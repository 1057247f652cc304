//! What the IAM Credentials API tests share: a plain HTTP/1.1 client whose replies are JSON,
//! and [`World`], the key server with its token service on a store of either backend, with
//! accounts, role bindings and bearer tokens made as the CLI and the token service make them.
#![allow(dead_code)] // each test file uses part of it
#![allow(clippy::unwrap_used)] // test helpers: a failure here is a broken fixture

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use iam::{Account, Kek, Role, Store, TokenService, TokenServiceSettings};
use serde_json::Value;
use testkit::{KeyServer, TestStore};

pub const START: u64 = 1_800_000_000;
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
pub const TC: Role = Role::ServiceAccountTokenCreator;

pub struct Reply {
    pub status: StatusCode,
    pub www_authenticate: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn error_status(&self) -> &str {
        self.body["error"]["status"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 request on a new connection (testkit's client); the body must be JSON.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let reply = testkit::http1(
        addr,
        method.as_str(),
        path,
        &headers,
        body.unwrap_or_default(),
    )
    .await;
    let www_authenticate = reply
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    Reply {
        status: StatusCode::from_u16(reply.status).unwrap(),
        www_authenticate,
        body: reply.json(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> String {
    let reply = testkit::http1(addr, "GET", path, &[], Vec::new()).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.body
}

pub fn path(email: &str, method: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}:{method}")
}

/// The key server with a token service on a store of its own, on a ManualClock at [`START`].
pub struct World {
    pub ts: TestStore,
    pub clock: clock::ManualClock,
    pub server: KeyServer,
    pub tokens: TokenService,
}

impl World {
    pub async fn new(ts: TestStore) -> World {
        Store::open(ts.location()).unwrap();
        let clock = clock::ManualClock::new(UNIX_EPOCH + Duration::from_secs(START));
        let shared = clock.shared();
        let (server, tokens) =
            KeyServer::start_tokens(ts.location(), move |url| TokenServiceSettings {
                clock: shared,
                ..TokenServiceSettings::new(url, Kek::generate().unwrap())
            })
            .await;
        World {
            ts,
            clock,
            server,
            tokens,
        }
    }

    pub fn store(&self) -> Store {
        Store::open(self.ts.location()).unwrap()
    }

    pub fn account(&self, name: &str) -> Account {
        self.store()
            .create_account(name, "my-project", START)
            .unwrap()
    }

    pub fn grant(&self, member: &Account, resource: &Account) {
        self.store()
            .grant_role(&member.email, TC, &resource.email, START)
            .unwrap();
    }

    pub fn revoke(&self, member: &Account, resource: &Account) {
        self.store()
            .revoke_role(&member.email, TC, &resource.email)
            .unwrap();
    }

    /// `Bearer …`: an access token of `account` with the `iam` scope.
    pub fn bearer(&self, account: &Account, lifetime: u64) -> String {
        self.bearer_with(account, &[IAM_SCOPE], lifetime)
    }

    pub fn bearer_with(&self, account: &Account, scopes: &[&str], lifetime: u64) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let (token, _) = self
            .tokens
            .issue_access_token(account, &scopes, Duration::from_secs(lifetime))
            .unwrap();
        format!("Bearer {token}")
    }

    pub async fn post(&self, auth: Option<&str>, path: &str, body: Value) -> Reply {
        send(
            self.server.addr,
            Method::POST,
            path,
            auth,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_raw(&self, auth: Option<&str>, path: &str, body: &[u8]) -> Reply {
        send(
            self.server.addr,
            Method::POST,
            path,
            auth,
            Some(body.to_vec()),
        )
        .await
    }
}

pub fn verify(token: &str, keys: &str) -> jose::Claims {
    let set = jose::KeySet::parse(keys.as_bytes(), jose::KeySource::Remote).unwrap();
    let jwt = jose::Jwt::parse(token).unwrap();
    jose::verify(jwt.jws(), &set).unwrap();
    jwt.claims().clone()
}
