//! A real browser: Debian's headless Chromium (through chromedriver) loads a page from one origin
//! and calls the Bookstore through the proxy on another, with `@connectrpc/connect-web`'s gRPC-Web
//! transport bundled into the page by esbuild (tests/node/browser_page.js). Every call is
//! cross-origin and carries non-simple headers, so the browser preflights it, and the proxy's CORS
//! answers decide what the page may read. The transcoded REST half (`fetch` of `/v1/shelves`)
//! waits in `browser_rest.rs.pending` for HTTP/JSON transcoding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod browser_support;

use browser_support::*;

const LIST_SHELVES: &str = "/endpoints.examples.bookstore.Bookstore/ListShelves";
const GET_SHELF: &str = "/endpoints.examples.bookstore.Bookstore/GetShelf";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_calls_through_the_proxy_with_grpc_web_across_origins() {
    let stage = Stage::start().await;

    // From the allowed origin: data with the token, a readable UNAUTHENTICATED without.
    let results = stage.run_page(&stage.allowed, "").await;
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
        // gRPC-Web answer the page could only read because it carried the CORS headers.
        assert_eq!(page[call]["ok"], false, "{call}: {results}");
        assert_eq!(page[call]["code"], 16, "{call}: {results}");
        assert_eq!(page[call]["message"], "Jwt is missing", "{call}: {results}");
    }
    // The browser preflighted (the proxy answered OPTIONS itself), then sent the calls.
    let seen = stage
        .log
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
    let results = stage.run_page(&stage.other, "&create=Smuggled").await;
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
    // A refused preflight for each of the three paths at least (a refusal is not cached), and
    // nothing else reached the proxy.
    let paths = ["ListShelves", "GetShelf", "CreateShelf"]
        .map(|m| format!("/endpoints.examples.bookstore.Bookstore/{m}"));
    let seen = stage
        .log
        .wait_until(LOG_SETTLES, |lines| {
            paths
                .iter()
                .all(|path| refused_preflights(&lines[before..], path) >= 1)
        })
        .await;
    let refused = &seen[before..];
    let counted: usize = paths.iter().map(|p| refused_preflights(refused, p)).sum();
    assert_eq!(counted, refused.len(), "{refused:#?}");
    // Nothing reached the Bookstore: the shelf the page tried to create does not exist.
    assert_eq!(backend_themes(&stage.backend).await, ["Fiction", "Fantasy"]);

    stage.browser.close().await;
}
