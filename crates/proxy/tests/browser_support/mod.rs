//! The stage of the browser tests (browser.rs, and browser_rest.rs once transcoding lands):
//! headless Chromium, two page origins serving the bundled page (tests/node/browser_page.js),
//! the Bookstore behind a proxy that requires a JWT on every method and allows only the first
//! origin by CORS, and the proxy's access log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keysets::test_server::{KeyServer, Reply, jwks};
use proxy::{CorsPreset, CorsSettings};
use serde_json::Value;
use testkit::access_log::{AccessLog, access_log};
use testkit::browser::{Browser, ChromeDriver, StaticFile, StaticSite, bundle, page_html};
use testkit::servers::{RunningProxy, bookstore_service, settings, start_bookstore};

pub const ISSUER: &str = "web@consumer.example";
pub const SERVICE: &str = "bookstore.endpoints.example.cloud.goog";
/// Generous: the first page of a fresh browser on a loaded 2-core machine.
pub const PAGE_DONE: Duration = Duration::from_secs(60);
/// For the proxy's last access-log lines after the page has its answers.
pub const LOG_SETTLES: Duration = Duration::from_secs(10);

/// The Bookstore with a JWT required on every method.
fn jwt_config(jwks_uri: &str) -> service_config::ServiceConfig {
    bookstore_service(&format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: consumer
    issuer: {ISSUER}
    jwks_uri: {jwks_uri}
  rules:
  - selector: "*"
    requirements:
    - provider_id: consumer
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    ))
}

fn sign(key: &jose::GeneratedKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": ISSUER, "sub": ISSUER, "aud": SERVICE, "iat": now, "exp": now + 3600});
    key.signer()
        .unwrap()
        .sign_jwt(Some("k1"), key.algorithm, &claims)
        .unwrap()
}

/// An origin serving the page, its bundled script and the Bookstore's descriptors.
async fn page_origin(script: &str) -> StaticSite {
    StaticSite::serve(vec![
        StaticFile::new(
            "/index.html",
            "text/html; charset=utf-8",
            page_html("page.js"),
        ),
        StaticFile::new(
            "/page.js",
            "text/javascript; charset=utf-8",
            script.to_owned(),
        ),
        StaticFile::new(
            "/bookstore.pb",
            "application/octet-stream",
            bookstore::FILE_DESCRIPTOR_SET,
        ),
    ])
    .await
}

/// Everything a browser test runs. Fields drop in order: the browser's session before
/// chromedriver, which kills what is left of the browser.
pub struct Stage {
    pub browser: Browser,
    pub driver: ChromeDriver,
    pub log: AccessLog,
    /// A JWT the proxy accepts.
    pub token: String,
    /// The origin the proxy allows (`--cors-preset basic --cors-allow-origin` it).
    pub allowed: StaticSite,
    /// Another origin, not allowed.
    pub other: StaticSite,
    pub backend: bookstore::RunningServer,
    pub proxy: RunningProxy,
    pub keys: KeyServer,
}

impl Stage {
    pub async fn start() -> Stage {
        let log = access_log();
        // The slow parts at once: esbuild, chromedriver and its browser.
        let bundled = tokio::task::spawn_blocking(|| bundle("browser_page.js"));
        let driver = ChromeDriver::start().await;
        let browser = driver.browser().await;
        let script = bundled.await.unwrap();

        let keys = KeyServer::start().await.unwrap();
        let key = jose::generate_rsa_2048().unwrap();
        keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
        let allowed = page_origin(&script).await;
        let other = page_origin(&script).await;
        let backend = start_bookstore().await;
        let mut settings = settings(backend.addr());
        settings.cors = Some(CorsSettings {
            allow_origin: allowed.origin(),
            ..CorsSettings::new(CorsPreset::Basic)
        });
        let proxy = RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings).await;
        assert_ne!(
            allowed.origin(),
            proxy.url(),
            "the page must be cross-origin"
        );
        assert_ne!(allowed.origin(), other.origin());
        Stage {
            browser,
            driver,
            log,
            token: sign(&key),
            allowed,
            other,
            backend,
            proxy,
            keys,
        }
    }

    /// Loads the page from `origin` with the proxy's URL, the token and `extra` query
    /// parameters, and returns what it wrote to `window.results` (`{mode, calls: {…}}`).
    pub async fn run_page(&self, origin: &StaticSite, extra: &str) -> Value {
        self.browser
            .open(&format!(
                "{}/index.html?proxy={}&token={}{extra}",
                origin.origin(),
                self.proxy.url(),
                self.token
            ))
            .await;
        self.browser.wait_for("window.results", PAGE_DONE).await
    }
}

/// The access-log lines of preflights the proxy allowed for `path` (answered before routing:
/// no method selector).
pub fn preflights(lines: &[Value], path: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["selector"] == "-" && l["path"] == path && l["http_status"] == 200)
        .count()
}

/// The access-log lines of preflights the proxy refused (403), with the path they were for.
pub fn refused_preflights(lines: &[Value], path: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["selector"] == "-" && l["path"] == path && l["http_status"] == 403)
        .count()
}

/// The access-log lines of calls routed to a Bookstore method (forwarded, or rejected by its
/// checks).
pub fn calls<'a>(lines: &'a [Value], method: &str) -> Vec<&'a Value> {
    let selector = format!("endpoints.examples.bookstore.Bookstore.{method}");
    lines.iter().filter(|l| l["selector"] == selector).collect()
}

/// The themes of a JSON array of shelves.
pub fn themes(shelves: &Value) -> Vec<&str> {
    shelves
        .as_array()
        .unwrap_or_else(|| panic!("not an array of shelves: {shelves}"))
        .iter()
        .map(|s| s["theme"].as_str().unwrap())
        .collect()
}

/// The Bookstore's shelves as its backend has them (not through the proxy).
pub async fn backend_themes(backend: &bookstore::RunningServer) -> Vec<String> {
    let mut direct = bookstore::pb::bookstore_client::BookstoreClient::connect(backend.url())
        .await
        .unwrap();
    let shelves = direct.list_shelves(()).await.unwrap().into_inner().shelves;
    shelves.into_iter().map(|s| s.theme).collect()
}
