//! A real browser: Debian's headless Chromium (through chromedriver) loads a page from one origin
//! and calls the Bookstore through the proxy on another, with `@connectrpc/connect-web`'s gRPC-Web
//! transport bundled into the page by esbuild (tests/node/browser_page.js). Every call is
//! cross-origin and carries non-simple headers, so the browser preflights it, and the proxy's CORS
//! answers decide what the page may read. The transcoded REST half (`fetch` of `/v1/shelves`)
//! waits in `browser_rest.rs.pending` for HTTP/JSON transcoding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore::pb::bookstore_client::BookstoreClient;
use common::*;
use keysets::test_server::{KeyServer, Reply, jwks};
use proxy::{CorsPreset, CorsSettings};
use serde_json::Value;
use testkit::access_log::access_log;
use testkit::browser::{ChromeDriver, StaticFile, StaticSite, bundle, page_html};

const ISSUER: &str = "web@consumer.example";
const SERVICE: &str = "bookstore.endpoints.example.cloud.goog";
const LIST_SHELVES: &str = "/endpoints.examples.bookstore.Bookstore/ListShelves";
const GET_SHELF: &str = "/endpoints.examples.bookstore.Bookstore/GetShelf";
/// Generous: the first page of a fresh browser on a loaded 2-core machine.
const PAGE_DONE: Duration = Duration::from_secs(60);
/// For the proxy's last access-log lines after the page has its answers.
const LOG_SETTLES: Duration = Duration::from_secs(10);

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

fn token(key: &jose::GeneratedKey) -> String {
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

/// The access-log lines of preflights the proxy allowed for `path` (answered before routing:
/// no method selector).
fn preflights(lines: &[Value], path: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["selector"] == "-" && l["path"] == path && l["http_status"] == 200)
        .count()
}

/// The access-log lines of calls routed to a method (forwarded, or rejected by its checks).
fn calls<'a>(lines: &'a [Value], method: &str) -> Vec<&'a Value> {
    let selector = format!("endpoints.examples.bookstore.Bookstore.{method}");
    lines.iter().filter(|l| l["selector"] == selector).collect()
}

fn themes(shelves: &Value) -> Vec<&str> {
    shelves
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["theme"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_calls_through_the_proxy_with_grpc_web_across_origins() {
    let log = access_log();
    // The slow parts at once: esbuild, chromedriver and its browser.
    let bundled = tokio::task::spawn_blocking(|| bundle("browser_page.js"));
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let script = bundled.await.unwrap();

    let keys = KeyServer::start().await.unwrap();
    let key = jose::generate_rsa_2048().unwrap();
    keys.set("/jwks", Reply::json(jwks(&[("k1", &key)])));
    let token = token(&key);
    let allowed = page_origin(&script).await;
    let other = page_origin(&script).await;
    let backend = start_bookstore().await;
    let mut settings = settings(backend.addr());
    settings.cors = Some(CorsSettings {
        allow_origin: allowed.origin(),
        ..CorsSettings::new(CorsPreset::Basic)
    });
    let proxy = RunningProxy::start(&jwt_config(&keys.url("/jwks")), settings).await;
    assert_ne!(allowed.origin(), proxy.url(), "the page must be cross-origin");

    // From the allowed origin: data with the token, a readable UNAUTHENTICATED without.
    browser
        .open(&format!(
            "{}/index.html?proxy={}&token={token}",
            allowed.origin(),
            proxy.url()
        ))
        .await;
    let results = browser.wait_for("window.results", PAGE_DONE).await;
    let page = &results["calls"];
    assert_eq!(page["list_shelves_with_token"]["ok"], true, "{results}");
    assert_eq!(
        themes(&page["list_shelves_with_token"]["shelves"]),
        ["Fiction", "Fantasy"],
        "{results}"
    );
    assert_eq!(page["get_shelf_with_token"]["ok"], true, "{results}");
    assert_eq!(
        page["get_shelf_with_token"]["shelf"],
        serde_json::json!({"id": "1", "theme": "Fiction"}),
        "{results}"
    );
    for call in ["list_shelves_without_token", "get_shelf_without_token"] {
        // connect's Code.Unauthenticated is 16, as gRPC's; the message is ESP's, read from the
        // grpc-web answer the page could only read because it carried the CORS headers.
        assert_eq!(page[call]["ok"], false, "{call}: {results}");
        assert_eq!(page[call]["code"], 16, "{call}: {results}");
        assert_eq!(page[call]["message"], "Jwt is missing", "{call}: {results}");
    }
    // The browser preflighted (the proxy answered OPTIONS itself), then sent the calls.
    let seen = log
        .wait_until(LOG_SETTLES, |lines| {
            calls(lines, "ListShelves").len() == 2 && calls(lines, "GetShelf").len() == 2
        })
        .await;
    for path in [LIST_SHELVES, GET_SHELF] {
        assert!(
            preflights(&seen, path) >= 1,
            "no preflight for {path}: {seen:#?}"
        );
    }
    for method in ["ListShelves", "GetShelf"] {
        let mut statuses: Vec<&str> = calls(&seen, method)
            .iter()
            .map(|l| l["grpc_status"].as_str().unwrap())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, ["OK", "UNAUTHENTICATED"], "{method}: {seen:#?}");
    }

    // From an origin the proxy does not allow: the preflight is refused, so the browser never
    // sends the calls and the page cannot read any answer, not even with a valid token.
    let before = seen.len();
    browser
        .open(&format!(
            "{}/index.html?proxy={}&token={token}&create=Smuggled",
            other.origin(),
            proxy.url()
        ))
        .await;
    let results = browser.wait_for("window.results", PAGE_DONE).await;
    let page = results["calls"].as_object().unwrap();
    assert_eq!(page.len(), 5, "{results}");
    for (call, outcome) in page {
        // fetch itself failed (connect's Code.Unknown, 2): no status, no message from the proxy.
        assert_eq!(outcome["ok"], false, "{call}: {results}");
        assert_eq!(outcome["code"], 2, "{call}: {results}");
        assert_eq!(
            outcome["cause"], "TypeError: Failed to fetch",
            "{call}: {results}"
        );
    }
    // One refused preflight per call path at least (a refusal is not cached; its line names
    // no path), and nothing else reached the proxy.
    let refusals = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["selector"] == "-" && l["http_status"] == 403)
            .count()
    };
    let seen = log
        .wait_until(LOG_SETTLES, |lines| refusals(&lines[before..]) >= 3)
        .await;
    let refused = &seen[before..];
    let refusals = refusals(refused);
    assert!(refusals >= 3, "{refused:#?}");
    assert_eq!(refusals, refused.len(), "{refused:#?}");
    for method in ["ListShelves", "GetShelf", "CreateShelf"] {
        assert!(calls(refused, method).is_empty(), "{method}: {refused:#?}");
    }
    // Nothing reached the Bookstore: the shelf the page tried to create does not exist.
    let mut direct = BookstoreClient::connect(backend.url()).await.unwrap();
    let shelves = direct.list_shelves(()).await.unwrap().into_inner().shelves;
    let themes: Vec<&str> = shelves.iter().map(|s| s.theme.as_str()).collect();
    assert_eq!(themes, ["Fiction", "Fantasy"]);

    browser.close().await;
}
