//! Log set-up: `tracing` to stderr, text or JSON lines, filtered by `RUST_LOG` (default `info`).
//!
//! Logging never blocks the server: lines go through a bounded in-memory queue to a writer
//! thread (tracing-appender's non-blocking writer in lossy mode). When stderr is slower than the
//! lines come, the queue fills and further lines are dropped, not waited for; drops are counted
//! and reported in a warning line (once a second at most, and at exit).

use std::io::IsTerminal as _;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::proxy_cmd::LogFormat;

/// Lines queued for stderr at most (`--log-buffer-lines`).
pub const DEFAULT_BUFFER_LINES: u32 = 16 * 1024;
/// How often dropped lines are looked for and reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the writer thread alive; dropping it (at exit) reports the last drops and flushes what
/// is queued (for at most a second: a stuck stderr cannot hold the exit).
pub struct LogGuard {
    counter: ErrorCounter,
    // Dropped after `drop` below has queued its last report.
    _worker: WorkerGuard,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let dropped = self.counter.dropped_lines();
        if dropped > 0 {
            tracing::warn!(
                dropped_total = dropped,
                "log lines dropped: stderr was not keeping up"
            );
        }
    }
}

/// Installs the subscriber. Hold the guard for the life of the process.
pub fn init(format: LogFormat, buffer_lines: u32) -> LogGuard {
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(usize::try_from(buffer_lines).unwrap_or(usize::MAX))
        .thread_name("esprit-log")
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal (and not with NO_COLOR): a log file or a
    // collector gets plain text, and the proxy does not format escapes on every line.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second initialisation (tests calling twice) is harmless; ignore it.
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        let counter = counter.clone();
        // A plain thread: it must report even when every runtime worker is busy.
        let _ = std::thread::Builder::new()
            .name("esprit-log-drops".into())
            .spawn(move || report_drops(&counter));
    }
    LogGuard {
        counter,
        _worker: worker,
    }
}

/// Reports newly dropped lines, through the same lossy queue (while stderr stays stuck the report
/// may itself be dropped; it then counts as a drop and the next report carries the total).
fn report_drops(counter: &ErrorCounter) {
    let mut reported = 0;
    loop {
        std::thread::sleep(DROP_REPORT_INTERVAL);
        let dropped = counter.dropped_lines();
        if dropped > reported {
            tracing::warn!(
                dropped = dropped - reported,
                dropped_total = dropped,
                "log lines dropped: stderr was not keeping up"
            );
            reported = dropped;
        }
    }
}
