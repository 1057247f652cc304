//! The access-log line, formatted directly into a byte buffer in the two formats `tracing`'s
//! formatter gives every other line (text and flattened JSON), byte for byte: the same fields in
//! the same order, strings escaped the same way. A call's thread formats it once and queues it
//! whole (see [`crate::log_sink`]); no per-field visitor, no allocation.
//!
//! Every string a client chooses (the unknown path) is escaped (Rust `Debug` quoting in text,
//! JSON escaping in JSON): a newline or a quote in it cannot end the line or forge another.

use std::fmt::Display;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use opentelemetry::trace::TraceId;

/// The access log's two forms (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `tracing`'s plain text line (`2026-…Z  INFO esprit::access: call selector="…" …`).
    Text,
    /// `tracing`'s JSON line with the fields flattened.
    Json,
}

/// What a call's line says. Never a header value: no token or key can reach it.
#[derive(Debug, Clone)]
pub(crate) struct AccessLine<'a> {
    pub(crate) selector: &'a str,
    pub(crate) path: &'a str,
    /// `auth_check`, `auth_provider`, `api_key`, and the status: `None` for a call that ended
    /// before a status (logged as `CANCELLED`, without those three fields).
    pub(crate) outcome: Option<Outcome<'a>>,
    pub(crate) peer: SocketAddr,
    pub(crate) client: Option<IpAddr>,
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) http_status: u16,
    pub(crate) duration_us: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Outcome<'a> {
    pub(crate) auth_check: &'a str,
    pub(crate) auth_provider: &'a str,
    pub(crate) api_key: &'a str,
    pub(crate) grpc_status: &'static str,
}

const MESSAGE: &str = "call";
const MESSAGE_NO_STATUS: &str = "call ended before a status";

impl AccessLine<'_> {
    fn message(&self) -> &'static str {
        if self.outcome.is_some() {
            MESSAGE
        } else {
            MESSAGE_NO_STATUS
        }
    }

    fn grpc_status(&self) -> &'static str {
        self.outcome.as_ref().map_or("CANCELLED", |o| o.grpc_status)
    }

    /// Appends the line, newline included, stamped `now`.
    pub(crate) fn write(&self, format: AccessLogFormat, now: SystemTime, out: &mut Vec<u8>) {
        match format {
            AccessLogFormat::Text => self.write_text(now, out),
            AccessLogFormat::Json => self.write_json(now, out),
        }
    }

    fn write_text(&self, now: SystemTime, out: &mut Vec<u8>) {
        push_timestamp(out, now);
        out.extend_from_slice(b"  INFO esprit::access: ");
        out.extend_from_slice(self.message().as_bytes());
        text_str(out, "selector", self.selector);
        text_str(out, "path", self.path);
        if let Some(outcome) = &self.outcome {
            text_str(out, "auth_check", outcome.auth_check);
            text_str(out, "auth_provider", outcome.auth_provider);
            text_str(out, "api_key", outcome.api_key);
        }
        out.extend_from_slice(b" peer=");
        push_socket_addr(out, self.peer);
        if let Some(client) = self.client {
            out.extend_from_slice(b" client=");
            push_ip(out, client);
        }
        if let Some(trace_id) = &self.trace_id {
            text_display(out, "trace_id", trace_id);
        }
        text_str(out, "grpc_status", self.grpc_status());
        out.extend_from_slice(b" http_status=");
        push_int(out, self.http_status);
        out.extend_from_slice(b" duration_us=");
        push_int(out, self.duration_us);
        out.push(b'\n');
    }

    fn write_json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"");
        out.extend_from_slice(self.message().as_bytes());
        out.push(b'"');
        json_str(out, "selector", self.selector);
        json_str(out, "path", self.path);
        if let Some(outcome) = &self.outcome {
            json_str(out, "auth_check", outcome.auth_check);
            json_str(out, "auth_provider", outcome.auth_provider);
            json_str(out, "api_key", outcome.api_key);
        }
        // Addresses and hex digits: nothing to escape.
        out.extend_from_slice(b",\"peer\":\"");
        push_socket_addr(out, self.peer);
        out.push(b'"');
        if let Some(client) = self.client {
            out.extend_from_slice(b",\"client\":\"");
            push_ip(out, client);
            out.push(b'"');
        }
        if let Some(trace_id) = &self.trace_id {
            json_display_str(out, "trace_id", trace_id);
        }
        json_str(out, "grpc_status", self.grpc_status());
        out.extend_from_slice(b",\"http_status\":");
        push_int(out, self.http_status);
        out.extend_from_slice(b",\"duration_us\":");
        push_int(out, self.duration_us);
        out.extend_from_slice(b",\"target\":\"esprit::access\"}\n");
    }

    /// The same line as a `tracing` event (where no log sink is installed, or where the text is
    /// coloured for a terminal).
    pub(crate) fn emit_event(&self) {
        let client = self.client.as_ref().map(tracing::field::display);
        let trace_id = self.trace_id.as_ref().map(tracing::field::display);
        match &self.outcome {
            Some(outcome) => tracing::info!(
                target: "esprit::access",
                selector = self.selector,
                path = self.path,
                auth_check = outcome.auth_check,
                auth_provider = outcome.auth_provider,
                api_key = outcome.api_key,
                peer = %self.peer,
                client,
                trace_id,
                grpc_status = outcome.grpc_status,
                http_status = self.http_status,
                duration_us = self.duration_us,
                "call"
            ),
            None => tracing::info!(
                target: "esprit::access",
                selector = self.selector,
                path = self.path,
                peer = %self.peer,
                client,
                trace_id,
                grpc_status = "CANCELLED",
                http_status = self.http_status,
                duration_us = self.duration_us,
                "call ended before a status"
            ),
        }
    }
}

/// Decimal digits without the formatting machinery (as `Display` writes them).
/// `now` as `humantime::format_rfc3339_micros` writes it (`2026-12-01T04:15:00.123456Z`), the
/// date and time of day formatted once per second on each thread: calls in the same second
/// only add their microseconds.
fn push_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        /// The whole second last formatted, and its `YYYY-MM-DDTHH:MM:SS`.
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(now));
        return;
    };
    let secs = since_epoch.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let formatted = humantime::format_rfc3339_seconds(whole).to_string();
        match formatted.as_bytes().get(..19) {
            Some(prefix) => text.copy_from_slice(prefix),
            // Beyond year 9999: not cached.
            None => {
                let _ = write!(out, "{}", humantime::format_rfc3339_micros(now));
                return;
            }
        }
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for digit in digits[1..7].iter_mut().rev() {
        // `rest % 10` is a single digit.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// As `Display` writes the address; IPv4 (every address on most deployments) digit by digit.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_int(out, a);
            for octet in [b, c, d] {
                out.push(b'.');
                push_int(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// As `Display` writes it: `a.b.c.d:port`, `[v6]:port`.
fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(b':');
            push_int(out, v4.port());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Printable ASCII other than `"` and `\`: written as is by both `Debug` and JSON.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// ` name="value"`, quoted and escaped as `Debug` does (as `tracing`'s text formatter does).
fn text_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    if plain(value) {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{value:?}");
    }
}

fn text_display(out: &mut Vec<u8>, name: &str, value: &dyn Display) {
    let _ = write!(out, " {name}={value}");
}

/// `,"name":"value"`, escaped as `serde_json` does.
fn json_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    if plain(value) {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// For values whose text needs no escaping (addresses, hex).
fn json_display_str(out: &mut Vec<u8>, name: &str, value: &dyn Display) {
    let _ = write!(out, ",\"{name}\":\"{value}\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn outcome() -> Outcome<'static> {
        Outcome {
            auth_check: "",
            auth_provider: "",
            api_key: "",
            grpc_status: "OK",
        }
    }

    fn line<'a>(path: &'a str) -> AccessLine<'a> {
        AccessLine {
            selector: "esprit.echo.v1.Echo.Unary",
            path,
            outcome: Some(outcome()),
            peer: "127.0.0.1:40348".parse().unwrap(),
            client: Some("10.1.2.3".parse().unwrap()),
            trace_id: None,
            http_status: 200,
            duration_us: 1634,
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_549_600_123_456)
    }

    fn formatted(line: &AccessLine<'_>, format: AccessLogFormat) -> String {
        let mut out = Vec::new();
        line.write(format, at(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_line_as_documented() {
        assert_eq!(
            formatted(&line(""), AccessLogFormat::Text),
            "2025-12-01T00:40:00.123456Z  INFO esprit::access: call \
             selector=\"esprit.echo.v1.Echo.Unary\" path=\"\" auth_check=\"\" auth_provider=\"\" \
             api_key=\"\" peer=127.0.0.1:40348 client=10.1.2.3 grpc_status=\"OK\" \
             http_status=200 duration_us=1634\n"
        );
    }

    #[test]
    fn json_line_as_documented() {
        let mut cancelled = line("/x");
        cancelled.outcome = None;
        cancelled.client = None;
        cancelled.trace_id = Some(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(
            formatted(&cancelled, AccessLogFormat::Json),
            "{\"timestamp\":\"2025-12-01T00:40:00.123456Z\",\"level\":\"INFO\",\
             \"message\":\"call ended before a status\",\"selector\":\"esprit.echo.v1.Echo.Unary\",\
             \"path\":\"/x\",\"peer\":\"127.0.0.1:40348\",\
             \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"grpc_status\":\"CANCELLED\",\
             \"http_status\":200,\"duration_us\":1634,\"target\":\"esprit::access\"}\n"
        );
    }

    /// Paths a client could send to forge a line or break a parser.
    const HOSTILE: &[&str] = &[
        "/a\"b",
        "/a\\b",
        "/x\n2025-12-01T00:40:00.000000Z  INFO esprit::access: call selector=\"forged\"",
        "/x\"}\n{\"target\":\"esprit::access\",\"message\":\"call\"",
        "/tab\there\rcr",
        "/ctl\u{1}\u{1b}[31mred\u{7f}",
        "/é/\u{301}/\u{2028}/\u{feff}",
    ];

    #[test]
    fn hostile_paths_stay_inside_their_field() {
        for path in HOSTILE {
            let text = formatted(&line(path), AccessLogFormat::Text);
            assert_eq!(text.matches('\n').count(), 1, "{text:?}");
            assert!(text.ends_with('\n'));
            assert!(!text.contains('\u{1b}'), "{text:?}");
            assert!(text.contains(&format!(" path={path:?} ")), "{text:?}");

            let json = formatted(&line(path), AccessLogFormat::Json);
            assert_eq!(json.matches('\n').count(), 1, "{json:?}");
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["path"], *path);
            assert_eq!(value["target"], "esprit::access");
            assert_eq!(value["selector"], "esprit.echo.v1.Echo.Unary");
        }
    }

    proptest::proptest! {
        /// The cached second plus microseconds is what humantime writes, whatever the instant
        /// (seconds apart, the same second again, before and after a cached one).
        #[test]
        fn timestamps_are_humantimes(
            micros in proptest::collection::vec(0u64..253_402_300_799_999_999, 1..8),
        ) {
            for &m in &micros {
                for at in [m, m / 1_000_000 * 1_000_000, m.saturating_sub(1)] {
                    let now = SystemTime::UNIX_EPOCH + Duration::from_micros(at);
                    let mut out = Vec::new();
                    push_timestamp(&mut out, now);
                    proptest::prop_assert_eq!(
                        String::from_utf8(out).unwrap(),
                        humantime::format_rfc3339_micros(now).to_string()
                    );
                }
            }
        }

        /// Addresses and numbers written digit by digit read as `Display` writes them.
        #[test]
        fn addresses_and_numbers_as_display(
            v4 in proptest::prelude::any::<std::net::Ipv4Addr>(),
            v6 in proptest::prelude::any::<std::net::Ipv6Addr>(),
            port in proptest::prelude::any::<u16>(),
            n in proptest::prelude::any::<u64>(),
        ) {
            for addr in [SocketAddr::from((v4, port)), SocketAddr::from((v6, port))] {
                let mut out = Vec::new();
                push_socket_addr(&mut out, addr);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
                let mut out = Vec::new();
                push_ip(&mut out, addr.ip());
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), addr.ip().to_string());
            }
            let mut out = Vec::new();
            push_int(&mut out, n);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    /// What `tracing`'s formatter writes for the same event, timestamp aside: the line format
    /// did not change when the access log stopped going through it.
    fn through_tracing(line: &AccessLine<'_>, format: AccessLogFormat) -> String {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&written);
        let make_writer = move || Capture(Arc::clone(&sink));
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(make_writer);
        let dispatch = match format {
            AccessLogFormat::Text => tracing::Dispatch::new(builder.finish()),
            AccessLogFormat::Json => {
                tracing::Dispatch::new(builder.json().flatten_event(true).finish())
            }
        };
        tracing::dispatcher::with_default(&dispatch, || line.emit_event());
        let bytes = written.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The timestamp is the only part that differs (our test clock against the real one).
    fn without_timestamp(line: &str, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Text => line[27..].to_owned(),
            AccessLogFormat::Json => format!("{}{}", &line[..14], &line[41..]),
        }
    }

    #[test]
    fn same_bytes_as_tracing_formatter() {
        let mut lines: Vec<AccessLine<'_>> = HOSTILE.iter().map(|p| line(p)).collect();
        let mut traced = line("");
        traced.trace_id = Some(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        traced.outcome = Some(Outcome {
            auth_check: "jwt_signature",
            auth_provider: "google_id_token",
            api_key: "missing",
            grpc_status: "UNAUTHENTICATED",
        });
        traced.http_status = 401;
        lines.push(traced);
        let mut cancelled = line("");
        cancelled.outcome = None;
        cancelled.peer = "[::1]:8080".parse().unwrap();
        cancelled.client = Some("2001:db8::1".parse().unwrap());
        lines.push(cancelled);
        for format in [AccessLogFormat::Text, AccessLogFormat::Json] {
            for line in &lines {
                let ours = formatted(line, format);
                let theirs = through_tracing(line, format);
                assert_eq!(
                    without_timestamp(&ours, format),
                    without_timestamp(&theirs, format),
                    "{format:?}"
                );
            }
        }
    }
}
