//! Log set-up: `tracing` to stderr, text or JSON lines, filtered by `RUST_LOG` (default `info`).
//!
//! Logging never blocks the server: every line (the access log's, formatted directly by the
//! proxy, and `tracing`'s other events) goes into one bounded in-memory queue that a writer
//! thread writes to stderr in batches, many lines per `write(2)` (`proxy::log_sink`). When stderr
//! is slower than the lines come, the queue fills and further lines are dropped, not waited for;
//! drops are counted and reported in a warning line (once a second at most, and at exit).

use std::io::IsTerminal as _;
use std::time::Duration;

use proxy::log_sink::{LogSink, SinkGuard, SinkSettings, SinkWriter};
use tracing_subscriber::EnvFilter;

use crate::proxy_cmd::LogFormat;

/// Lines queued for stderr at most (`--log-buffer-lines`).
pub const DEFAULT_BUFFER_LINES: u32 = 16 * 1024;
/// How often dropped lines are looked for and reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the writer thread alive; dropping it (at exit) reports the last drops and writes what
/// is queued (for at most a second: a stuck stderr cannot hold the exit).
pub struct LogGuard {
    sink: Option<LogSink>,
    // Dropped after `drop` below has queued its last report.
    _writer: Option<SinkGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let dropped = self.sink.as_ref().map_or(0, LogSink::dropped);
        if dropped > 0 {
            tracing::warn!(
                dropped_total = dropped,
                "log lines dropped: stderr was not keeping up"
            );
        }
    }
}

/// Installs the subscriber (and the access log's direct path). Hold the guard for the life of
/// the process.
pub fn init(format: LogFormat, buffer_lines: u32) -> LogGuard {
    let settings = SinkSettings {
        max_lines: usize::try_from(buffer_lines).unwrap_or(usize::MAX),
        ..SinkSettings::default()
    };
    let (sink, writer) = match LogSink::spawn(std::io::stderr(), settings) {
        Ok((sink, writer)) => (Some(sink), Some(writer)),
        // No thread for the writer: log synchronously rather than not at all.
        Err(_) => (None, None),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal (and not with NO_COLOR): a log file or a
    // collector gets plain text, and the proxy does not format escapes on every line.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let make_writer = {
        let sink = sink.clone();
        move || match &sink {
            Some(sink) => Out::Sink(sink.writer()),
            None => Out::Stderr(std::io::stderr()),
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(make_writer);
    // A second initialisation (tests calling twice) is harmless; ignore it.
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let (true, Some(sink)) = (installed.is_ok(), &sink) {
        // Coloured text keeps going through `tracing`'s formatter; plain lines are written
        // directly by the proxy in the same format.
        if !ansi || matches!(format, LogFormat::Json) {
            let access_format = match format {
                LogFormat::Json => proxy::AccessLogFormat::Json,
                LogFormat::Text => proxy::AccessLogFormat::Text,
            };
            proxy::install_access_log(sink.clone(), access_format);
        }
        let sink = sink.clone();
        // A plain thread: it must report even when every runtime worker is busy.
        let _ = std::thread::Builder::new()
            .name("esprit-log-drops".into())
            .spawn(move || report_drops(&sink));
    }
    LogGuard {
        sink,
        _writer: writer,
    }
}

/// Where `tracing`'s formatter writes an event.
enum Out {
    Sink(SinkWriter),
    Stderr(std::io::Stderr),
}

impl std::io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Sink(out) => out.write(buf),
            Out::Stderr(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Sink(out) => out.flush(),
            Out::Stderr(out) => out.flush(),
        }
    }
}

/// Reports newly dropped lines, through the same lossy queue (while stderr stays stuck the report
/// may itself be dropped; it then counts as a drop and the next report carries the total).
fn report_drops(sink: &LogSink) {
    let mut reported = 0;
    loop {
        std::thread::sleep(DROP_REPORT_INTERVAL);
        let dropped = sink.dropped();
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
