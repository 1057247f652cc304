//! Bounds on the access log: one line per forwarded call, but the lines of calls the proxy
//! rejected itself are rate-limited, so a flood of bad calls cannot flood the log (or, through a
//! slow log consumer, the proxy). Suppressed lines are counted and reported once per
//! [`SUMMARY_INTERVAL`].
//!
//! Where the lines go: with a [`LogSink`] installed ([`install`], the `esprit` binary does), each
//! line is formatted once by the call's thread and queued whole for the sink's writer thread;
//! otherwise (or when a terminal gets coloured text) it is a `tracing` event like any other.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::access_line::{AccessLine, AccessLogFormat};
use crate::log_sink::LogSink;

static SINK: OnceLock<(LogSink, AccessLogFormat)> = OnceLock::new();

/// Access lines go to `sink` in `format` from now on, for the life of the process. `false` when
/// a sink was installed already (that one stays).
pub fn install(sink: LogSink, format: AccessLogFormat) -> bool {
    SINK.set((sink, format)).is_ok()
}

thread_local! {
    /// Each thread's line buffer, reused from call to call.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Writes one call's line, unless `RUST_LOG` leaves `esprit::access` out.
pub(crate) fn write(line: &AccessLine<'_>) {
    if !tracing::enabled!(target: "esprit::access", tracing::Level::INFO) {
        return;
    }
    let Some((sink, format)) = SINK.get() else {
        line.emit_event();
        return;
    };
    let now = SystemTime::now();
    let queued = LINE.try_with(|buffer| {
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            return false;
        };
        buffer.clear();
        line.write(*format, now, &mut buffer);
        sink.push(&buffer);
        true
    });
    if queued != Ok(true) {
        // The thread is exiting (or re-entered): a buffer of its own.
        let mut buffer = Vec::with_capacity(512);
        line.write(*format, now, &mut buffer);
        sink.push(&buffer);
    }
}

/// How often suppressed rejected-call lines are summed up in one line (while there are some).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Access-log limits. Documented in README.md (`--access-log-rejected-per-second`).
#[derive(Debug, Clone, Copy)]
pub struct AccessLogSettings {
    /// Lines per second for calls the proxy rejected (a token bucket holding one second's
    /// worth). 0 logs none of them; the summary still counts them.
    pub rejected_per_second: u32,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        Self {
            rejected_per_second: 100,
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` held. Pure: the caller gives the time.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-proxy limiter for rejected-call lines, shared by every call.
#[derive(Debug)]
pub(crate) struct RejectedLines {
    bucket: Mutex<TokenBucket>,
    suppressed: AtomicU64,
    reporting: AtomicBool,
}

impl RejectedLines {
    pub(crate) fn new(settings: AccessLogSettings) -> Arc<Self> {
        Arc::new(Self {
            bucket: Mutex::new(TokenBucket::new(
                settings.rejected_per_second,
                Instant::now(),
            )),
            suppressed: AtomicU64::new(0),
            reporting: AtomicBool::new(false),
        })
    }

    /// Whether a rejected call's line may be written now. A refusal is counted, and a summary
    /// is written within [`SUMMARY_INTERVAL`].
    pub(crate) fn admit(self: &Arc<Self>) -> bool {
        let admitted = match self.bucket.lock() {
            Ok(mut bucket) => bucket.take(Instant::now()),
            // A panic while holding this lock cannot happen (no code runs under it but `take`);
            // if it ever did, logging beats silence.
            Err(_) => true,
        };
        if !admitted {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            self.start_reporter();
        }
        admitted
    }

    /// One reporter task at a time, alive while lines are being suppressed.
    fn start_reporter(self: &Arc<Self>) {
        if self.reporting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reporting.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SUMMARY_INTERVAL).await;
                let suppressed = this.suppressed.swap(0, Ordering::Relaxed);
                if suppressed > 0 {
                    tracing::warn!(
                        target: "esprit::access",
                        suppressed,
                        interval_s = SUMMARY_INTERVAL.as_secs(),
                        "rejected-call lines suppressed"
                    );
                    continue;
                }
                this.reporting.store(false, Ordering::Release);
                // A suppression between the swap and the store saw `reporting` still set: take
                // the job back rather than leave its count unreported.
                if this.suppressed.load(Ordering::Relaxed) == 0
                    || this.reporting.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_a_seconds_worth_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        let admitted = (0..100).filter(|_| bucket.take(t0)).count();
        assert_eq!(admitted, 10);
        assert!(!bucket.take(t0 + Duration::from_millis(50)));
        assert!(bucket.take(t0 + Duration::from_millis(110)));
        // A long quiet time refills to one second's worth, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| bucket.take(later)).count(), 10);
    }

    #[test]
    fn zero_rate_admits_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!(!bucket.take(t0));
        assert!(!bucket.take(t0 + Duration::from_secs(10)));
    }
}
