//! The access log of the in-process proxies (`esprit::access` events), captured as the JSON
//! lines `esprit proxy` writes: for tests that check what reached the proxy (a browser's
//! preflight) and what it forwarded.
//!
//! It installs the process's global `tracing` subscriber, so a test binary that uses it must not
//! install another; every proxy of the process logs into the same capture.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// The captured lines, oldest first.
#[derive(Clone)]
pub struct AccessLog {
    lines: Arc<Mutex<Vec<u8>>>,
}

/// The capture, started on first use (before the proxies it should see log anything).
pub fn access_log() -> AccessLog {
    static LOG: OnceLock<AccessLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = AccessLog {
            lines: Arc::new(Mutex::new(Vec::new())),
        };
        let writer = log.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("esprit::access=info")
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the access-log capture must be the process's only tracing subscriber");
        log
    })
    .clone()
}

impl AccessLog {
    /// Every line so far, as JSON (`path`, `selector`, `http_status`, `grpc_status`, …).
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.lines.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Polls the lines until `settled` holds for them and returns them; fails the test after
    /// `within`. A call's line is written when its answer ends, which may be just after the
    /// client saw that answer.
    pub async fn wait_until(
        &self,
        within: std::time::Duration,
        settled: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lines = self.lines();
            if settled(&lines) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the access log did not settle within {within:?}: {lines:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Write for AccessLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
