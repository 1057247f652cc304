//! The demo's REST calls: the same Bookstore through the proxy over HTTP/JSON (transcoding from
//! the proto's `google.api.http` annotations), made with a plain HTTP client and shown as the
//! `curl` commands that do the same.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use super::transcript::{command, output, step};

/// One REST call: the curl line shown, the request, and the status it should get.
struct RestCall {
    line: String,
    path: String,
    token: Option<String>,
    want: u16,
}

/// Step 12: ListShelves and GetShelf as `curl` calls them. Returns how many calls did not do
/// what they should.
pub(super) async fn run(proxy: SocketAddr, token: &str, api_key: &str) -> anyhow::Result<usize> {
    step(
        "12. The same API over HTTP/JSON: curl through the proxy (transcoded from the proto's google.api.http rules)",
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("an HTTP client")?;
    let base = format!("http://{proxy}");
    let calls = [
        RestCall {
            line: format!("curl -s -H \"Authorization: Bearer $JWT_TOKEN\" {base}/v1/shelves"),
            path: "/v1/shelves".to_owned(),
            token: Some(token.to_owned()),
            want: 200,
        },
        RestCall {
            line: format!("curl -s {base}/v1/shelves  # without a token"),
            path: "/v1/shelves".to_owned(),
            token: None,
            want: 401,
        },
        RestCall {
            line: format!(
                "curl -s -H \"Authorization: Bearer $JWT_TOKEN\" \"{base}/v1/shelves/1?key=$API_KEY\""
            ),
            path: format!("/v1/shelves/1?key={api_key}"),
            token: Some(token.to_owned()),
            want: 200,
        },
    ];
    let mut failures = 0;
    for call in calls {
        command(&call.line);
        let mut request = client.get(format!("{base}{}", call.path));
        if let Some(token) = &call.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .context("calling the proxy over HTTP")?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .context("reading the proxy's answer")?;
        output(&body);
        if status == call.want {
            output(&format!("  -> as expected: HTTP {status}"));
        } else {
            output(&format!(
                "  -> UNEXPECTED: HTTP {status}, wanted {}",
                call.want
            ));
            failures += 1;
        }
    }
    Ok(failures)
}
