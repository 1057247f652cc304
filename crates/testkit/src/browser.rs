//! A real browser for the tests: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, started here on a loopback port, killed with its browsers when dropped), a
//! static origin to load pages from, and the page's script bundled by esbuild at test time.
//!
//! Chromium and chromedriver are required, not optional: when either is missing the test fails
//! with what to install (`apt-get install chromium chromium-driver`; `.ci/run` does).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// How long chromedriver may take to answer `/status` on a loaded machine.
const DRIVER_START: Duration = Duration::from_secs(30);

/// `name` on `PATH`; fails the test, saying what to install, when it is not there.
pub fn required_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: the browser tests need Debian's chromium and \
                 chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            )
        })
}

/// `chromedriver` listening on a loopback port, in a process group of its own: dropping it
/// kills the group (chromedriver and every browser it started), however the test ends.
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port (found by binding 127.0.0.1:0; tried again on another
    /// port if something took it meanwhile) and waits until it reports ready.
    pub async fn start() -> ChromeDriver {
        let program = required_program("chromedriver");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = crate::free_port().await;
            let child = Command::new(&program)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|err| panic!("starting {}: {err}", program.display()));
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            match driver.wait_ready(port).await {
                Ok(()) => return driver,
                Err(err) => last_error = err,
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }

    async fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = tokio::time::Instant::now() + DRIVER_START;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("chromedriver exited ({status})"));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let (status, body) = crate::http_get(addr, "/status").await;
                let ready = serde_json::from_str::<Value>(&body)
                    .map(|v| v["value"]["ready"] == true)
                    .unwrap_or(false);
                if status == 200 && ready {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("not ready on port {port} after {DRIVER_START:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new headless Chromium (`--no-sandbox`, as root needs; a fresh profile in a temporary
    /// directory) in a WebDriver session.
    pub async fn browser(&self) -> Browser {
        let chromium = required_program("chromium");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            DRIVER_START,
            fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&self.url),
        )
        .await
        .unwrap_or_else(|_| panic!("no browser session within {DRIVER_START:?}"))
        .unwrap_or_else(|err| panic!("starting headless chromium through chromedriver: {err}"));
        Browser {
            client,
            _profile: profile,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`); the browsers it started
        // are in that group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// One headless Chromium in a WebDriver session.
pub struct Browser {
    pub client: fantoccini::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Loads `url` (bounded: 30 s).
    pub async fn open(&self, url: &str) {
        tokio::time::timeout(Duration::from_secs(30), self.client.goto(url))
            .await
            .unwrap_or_else(|_| panic!("{url} not loaded within 30 s"))
            .unwrap_or_else(|err| panic!("loading {url}: {err}"));
    }

    /// Polls the JavaScript expression `expression` in the page until it is neither `null` nor
    /// `undefined`, and returns its value (as JSON); fails the test after `within`.
    pub async fn wait_for(&self, expression: &str, within: Duration) -> Value {
        let script = format!("return ({expression}) ?? null;");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self
                .client
                .execute(&script, vec![])
                .await
                .unwrap_or_else(|err| panic!("evaluating {expression}: {err}"));
            if !value.is_null() {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self
                    .client
                    .source()
                    .await
                    .unwrap_or_else(|err| format!("(no page source: {err})"));
                panic!("{expression} still unset after {within:?}; the page:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session (the browser exits).
    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// A file of a [`StaticSite`].
#[derive(Clone)]
pub struct StaticFile {
    pub path: String,
    pub content_type: &'static str,
    pub body: bytes::Bytes,
}

impl StaticFile {
    pub fn new(path: &str, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Self {
        Self {
            path: path.to_owned(),
            content_type,
            body: body.into(),
        }
    }
}

/// An origin serving fixed files over HTTP/1.1 on 127.0.0.1:0 (404 for anything else), on a
/// background task until the runtime ends. Each site has its own port, so each is its own
/// origin to a browser.
pub struct StaticSite {
    pub addr: SocketAddr,
}

impl StaticSite {
    pub async fn serve(files: Vec<StaticFile>) -> StaticSite {
        let listener = crate::listener().await;
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(files);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let files = Arc::clone(&files);
                let service = hyper::service::service_fn(move |request| {
                    let files = Arc::clone(&files);
                    async move { Ok::<_, std::convert::Infallible>(answer(&files, &request)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        StaticSite { addr }
    }

    /// `http://127.0.0.1:PORT`: the site's origin, as a browser writes it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer<B>(
    files: &[StaticFile],
    request: &hyper::Request<B>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let found = files.iter().find(|f| f.path == request.uri().path());
    let (status, content_type, body) = match found {
        Some(file) => (200, file.content_type, file.body.clone()),
        None => (404, "text/plain", bytes::Bytes::from_static(b"not found")),
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(http_body_util::Full::new(body))
        .unwrap()
}

/// Bundles `tests/node/<script>` and the npm packages it imports (from
/// [`crate::node_modules`]) into one browser script with the pinned esbuild; returns its text.
/// Blocking: call from `spawn_blocking` in async tests.
pub fn bundle(script: &str) -> String {
    let modules = crate::node_modules();
    let entry = crate::repo_root().join("tests/node").join(script);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("bundle.js");
    let esbuild = modules.join(".bin/esbuild");
    let output = Command::new(&esbuild)
        .env("NODE_PATH", &modules)
        .arg(&entry)
        .args([
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=chrome120",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.display()))
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", esbuild.display()));
    crate::assert_success(&format!("esbuild {}", entry.display()), &output);
    std::fs::read_to_string(&out).unwrap()
}

/// A page that runs `script` and has an `#output` element for it to write into.
pub fn page_html(script: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>esprit browser test</title>\
         </head><body><pre id=\"output\"></pre><script src=\"{script}\"></script></body></html>\n"
    )
}
