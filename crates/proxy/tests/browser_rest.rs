//! A real browser, REST half: headless Chromium's own `fetch` calls the Bookstore's transcoded
//! HTTP/JSON routes (`google.api.http` in bookstore.proto) through the proxy on another origin.
//! A bearer token makes the request non-simple, so the browser preflights it; without a token
//! the GET is simple (no preflight) and the page reads the proxy's 401 only because it carries
//! the CORS headers. From an origin the proxy does not allow, the page reads nothing.
//! The stage (browser, origins, proxy with `--cors-preset basic`, access log) is browser.rs's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod browser_support;

use browser_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_fetches_transcoded_rest_across_origins() {
    let stage = Stage::start().await;

    // From the allowed origin.
    let results = stage.run_page(&stage.allowed, "&mode=rest").await;
    let page = &results["calls"];
    let listed = &page["list_shelves_with_token"];
    assert_eq!(listed["status"], 200, "{results}");
    assert_eq!(
        themes(&listed["body"]["shelves"]),
        ["Fiction", "Fantasy"],
        "{results}"
    );
    // proto3 JSON: an int64 is a string.
    assert_eq!(
        page["get_shelf_with_token"]["body"],
        serde_json::json!({"id": "1", "theme": "Fiction"}),
        "{results}"
    );
    let refused = &page["list_shelves_without_token"];
    assert_eq!(refused["status"], 401, "{results}");
    assert_eq!(refused["body"]["message"], "Jwt is missing", "{results}");

    // The browser preflighted the calls with a token; the proxy routed all three.
    let seen = stage
        .log
        .wait_until(LOG_SETTLES, |lines| {
            calls(lines, "ListShelves").len() == 2 && calls(lines, "GetShelf").len() == 1
        })
        .await;
    for path in ["/v1/shelves", "/v1/shelves/1"] {
        assert!(
            preflights(&seen, path) >= 1,
            "no preflight for {path}: {seen:#?}"
        );
    }
    let mut statuses: Vec<&str> = calls(&seen, "ListShelves")
        .iter()
        .map(|l| l["grpc_status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["OK", "UNAUTHENTICATED"], "{seen:#?}");

    // From an origin the proxy does not allow: the calls with a token stop at their refused
    // preflight; the simple GET without one is sent and rejected (no token), but its answer
    // carries no CORS header, so the page cannot read it either.
    let before = seen.len();
    let results = stage.run_page(&stage.other, "&mode=rest").await;
    let page = results["calls"].as_object().unwrap();
    assert_eq!(page.len(), 3, "{results}");
    for (call, outcome) in page {
        assert_eq!(outcome["ok"], false, "{call}: {results}");
        assert_eq!(
            outcome["status"],
            serde_json::Value::Null,
            "{call}: {results}"
        );
        assert_eq!(
            outcome["error"], "TypeError: Failed to fetch",
            "{call}: {results}"
        );
    }
    let seen = stage
        .log
        .wait_until(LOG_SETTLES, |lines| {
            let lines = &lines[before..];
            refused_preflights(lines, "/v1/shelves") >= 1
                && refused_preflights(lines, "/v1/shelves/1") >= 1
                && calls(lines, "ListShelves").len() == 1
        })
        .await;
    let other = &seen[before..];
    // Only the GET without a token was routed, and it was rejected, not forwarded.
    assert_eq!(
        calls(other, "ListShelves")[0]["grpc_status"],
        "UNAUTHENTICATED",
        "{other:#?}"
    );
    assert!(calls(other, "GetShelf").is_empty(), "{other:#?}");
    let refused =
        refused_preflights(other, "/v1/shelves") + refused_preflights(other, "/v1/shelves/1");
    assert_eq!(refused + 1, other.len(), "{other:#?}");

    stage.browser.close().await;
}
