//! The log writer: lines (access lines and `tracing`'s other events) are appended to one bounded
//! in-memory buffer and written to the output (stderr) by a thread of its own, many lines per
//! `write(2)`.
//!
//! A call's thread does no syscall for its line: it appends the bytes under a short lock. The
//! writer thread is woken by the first line of a batch, lets the batch gather for
//! [`SinkSettings::flush_interval`] (or until [`SinkSettings::batch_bytes`] or half the line limit
//! is queued), then writes it whole. When the output is slower than the lines come, the queue
//! fills to [`SinkSettings::max_lines`] and further lines are dropped and counted, never waited
//! for. [`SinkGuard`] writes what is queued at exit.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How the writer batches. Documented in README.md (`--log-buffer-lines`, "how it is written").
#[derive(Debug, Clone, Copy)]
pub struct SinkSettings {
    /// Lines queued at most; past that, lines are dropped and counted.
    pub max_lines: usize,
    /// A batch is written once this many bytes are queued…
    pub batch_bytes: usize,
    /// …or this long after its first line.
    pub flush_interval: Duration,
    /// At exit, how long the last lines may take to be written.
    pub shutdown_timeout: Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            max_lines: 16 * 1024,
            batch_bytes: 64 * 1024,
            flush_interval: Duration::from_millis(50),
            shutdown_timeout: Duration::from_secs(1),
        }
    }
}

/// What is waiting for the writer thread.
#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    lines: usize,
    /// The writer sleeps until a first line comes (it needs a wake-up).
    writer_idle: bool,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    dropped: AtomicU64,
    settings: SinkSettings,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No code that can panic runs under this lock; if it ever did, the queue is still whole.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Half the line limit: a batch that large is written at once, so a burst cannot reach the
    /// limit while the writer waits for the flush interval.
    fn early_lines(&self) -> usize {
        (self.settings.max_lines / 2).max(1)
    }
}

/// A handle for writing lines; cheap to clone. Lines are whole records (one `push` per line,
/// newline included).
#[derive(Debug, Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes what is queued (for at most
/// [`SinkSettings::shutdown_timeout`]: a stuck output cannot hold the exit).
#[derive(Debug)]
pub struct SinkGuard {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl LogSink {
    /// Starts the writer thread over `out`.
    pub fn spawn<W: Write + Send + 'static>(
        out: W,
        settings: SinkSettings,
    ) -> io::Result<(LogSink, SinkGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                bytes: Vec::with_capacity(settings.batch_bytes.min(1 << 20)),
                ..Queue::default()
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            settings,
        });
        let (done_tx, done) = mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("esprit-log".into())
            .spawn(move || {
                write_batches(&writer, out);
                let _ = done_tx.send(());
            })?;
        Ok((
            LogSink {
                shared: Arc::clone(&shared),
            },
            SinkGuard { shared, done },
        ))
    }

    /// Queues one line. `false` when it was dropped (queue full, counted) or the sink is closed.
    pub fn push(&self, line: &[u8]) -> bool {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        if queue.closed {
            return false;
        }
        if queue.lines >= shared.settings.max_lines {
            drop(queue);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let before = queue.bytes.len();
        queue.bytes.extend_from_slice(line);
        queue.lines += 1;
        // One wake-up per batch: for its first line when the writer sleeps, and when the batch
        // grows large enough to be written before its interval is over.
        let wake = (queue.writer_idle && before == 0)
            || (before < shared.settings.batch_bytes
                && queue.bytes.len() >= shared.settings.batch_bytes)
            || queue.lines == shared.early_lines();
        if wake {
            queue.writer_idle = false;
        }
        drop(queue);
        if wake {
            shared.wake.notify_one();
        }
        true
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// An [`io::Write`] that queues each `write` as one line (for a `tracing` formatter, which
    /// writes an event whole).
    pub fn writer(&self) -> SinkWriter {
        SinkWriter { sink: self.clone() }
    }
}

/// See [`LogSink::writer`]. Lossy: a dropped line still counts as written.
#[derive(Debug)]
pub struct SinkWriter {
    sink: LogSink,
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let _ = self
            .done
            .recv_timeout(self.shared.settings.shutdown_timeout);
    }
}

/// The writer thread: waits for a batch, lets it gather, writes it whole; until closed and
/// empty.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let settings = shared.settings;
    let mut batch = Vec::with_capacity(settings.batch_bytes.min(1 << 20));
    loop {
        let mut queue = shared.lock();
        while queue.bytes.is_empty() && !queue.closed {
            queue.writer_idle = true;
            queue = shared
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        queue.writer_idle = false;
        if queue.bytes.is_empty() {
            // Closed, and everything written.
            return;
        }
        if !queue.closed {
            queue = shared
                .wake
                .wait_timeout_while(queue, settings.flush_interval, |q| {
                    !q.closed
                        && q.bytes.len() < settings.batch_bytes
                        && q.lines < shared.early_lines()
                })
                .map_or_else(|poisoned| poisoned.into_inner().0, |(q, _)| q);
        }
        std::mem::swap(&mut queue.bytes, &mut batch);
        queue.lines = 0;
        drop(queue);
        // A failed write (stderr closed) loses this batch; the next is tried all the same.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        // A burst's buffer is not kept for good.
        if batch.capacity() > 4 * settings.batch_bytes {
            batch = Vec::with_capacity(settings.batch_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, Sender};

    /// An output that records each `write` call, and can be held stuck.
    #[derive(Clone)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<Mutex<()>>,
        started: Option<Sender<()>>,
    }

    impl Recorder {
        fn new() -> Self {
            Self {
                writes: Arc::default(),
                gate: Arc::default(),
                started: None,
            }
        }

        fn all(&self) -> Vec<u8> {
            self.writes.lock().unwrap().concat()
        }

        fn calls(&self) -> usize {
            self.writes.lock().unwrap().len()
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(started) = &self.started {
                let _ = started.send(());
            }
            let _held = self.gate.lock().unwrap();
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn settings() -> SinkSettings {
        SinkSettings {
            max_lines: 100_000,
            batch_bytes: 64 * 1024,
            flush_interval: Duration::from_millis(20),
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    fn line(i: usize) -> String {
        format!("line {i:06} {}\n", "x".repeat(200))
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn many_lines_go_out_whole_in_order_in_few_writes() {
        let out = Recorder::new();
        // Batches cut by size, not by a preempted test thread's pauses (the last one by time).
        let (sink, guard) = LogSink::spawn(
            out.clone(),
            SinkSettings {
                flush_interval: Duration::from_millis(500),
                ..settings()
            },
        )
        .unwrap();
        const N: usize = 5_000;
        for i in 0..N {
            assert!(sink.push(line(i).as_bytes()));
        }
        let expected: String = (0..N).map(line).collect();
        wait_for("lines missing", || out.all().len() == expected.len());
        assert_eq!(String::from_utf8(out.all()).unwrap(), expected);
        // About 1 MiB in 64 KiB batches, not one write per line.
        assert!(
            out.calls() <= N / 100,
            "{} writes for {N} lines",
            out.calls()
        );
        assert_eq!(sink.dropped(), 0);
        drop(guard);
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let out = Recorder::new();
        let (sink, guard) = LogSink::spawn(out.clone(), settings()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        sink.push(format!("thread {t} line {i:04}\n").as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let all = String::from_utf8(out.all()).unwrap();
        assert_eq!(all.lines().count(), 4_000);
        for t in 0..4 {
            let mine: Vec<&str> = all
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..1_000)
                .map(|i| format!("thread {t} line {i:04}"))
                .collect();
            assert_eq!(mine, expected, "thread {t}'s lines reordered or torn");
        }
    }

    #[test]
    fn a_single_line_is_written_within_the_flush_interval() {
        let out = Recorder::new();
        let (sink, _guard) = LogSink::spawn(out.clone(), settings()).unwrap();
        sink.push(b"alone\n");
        wait_for("a lone line was never written", || out.all() == b"alone\n");
    }

    #[test]
    fn dropping_the_guard_writes_every_queued_line() {
        let out = Recorder::new();
        // An interval far longer than the test: only the shutdown can write these.
        let (sink, guard) = LogSink::spawn(
            out.clone(),
            SinkSettings {
                flush_interval: Duration::from_secs(3600),
                ..settings()
            },
        )
        .unwrap();
        for i in 0..100 {
            sink.push(line(i).as_bytes());
        }
        drop(guard);
        let expected: String = (0..100).map(line).collect();
        assert_eq!(String::from_utf8(out.all()).unwrap(), expected);
        assert!(
            !sink.push(b"after the exit\n"),
            "a closed sink takes no line"
        );
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_never_blocks() {
        let (started_tx, started): (Sender<()>, Receiver<()>) = mpsc::channel();
        let out = Recorder {
            started: Some(started_tx),
            ..Recorder::new()
        };
        let gate = Arc::clone(&out.gate);
        let stuck = gate.lock().unwrap();
        let (sink, guard) = LogSink::spawn(
            out.clone(),
            SinkSettings {
                max_lines: 16,
                shutdown_timeout: Duration::from_millis(100),
                ..settings()
            },
        )
        .unwrap();
        sink.push(b"first\n");
        // The writer is now inside `write`, held there.
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let began = std::time::Instant::now();
        let accepted = (0..1_000).filter(|_| sink.push(b"more\n")).count();
        assert!(began.elapsed() < Duration::from_secs(5), "push blocked");
        assert_eq!(accepted, 16, "the queue holds its limit");
        assert_eq!(sink.dropped(), 1_000 - 16);
        // A stuck output cannot hold the exit past the shutdown timeout.
        let began = std::time::Instant::now();
        drop(guard);
        assert!(began.elapsed() < Duration::from_secs(5));
        // Once it moves again, what was queued is written.
        drop(stuck);
        wait_for("queued lines lost", || out.all().len() == 6 + 16 * 5);
    }
}
