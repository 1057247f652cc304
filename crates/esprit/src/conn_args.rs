//! Connection flags shared by `esprit proxy` and `esprit iam serve` (one definition, one set of
//! bounds; both servers apply them through the `conn-guard` crate).

use std::time::Duration;

use clap::Args;

use crate::duration::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Connections open at once, all peers together; more are closed at accept (logged at most
    /// once a second). 1 to 1000000.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Connections open at once from one peer IP address. 1 to 1000000.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections_per_peer: u32,
    /// From accept (TLS handshake included) until the first request's headers are complete;
    /// also bounds each HTTP/1.1 request's headers. 1s to 5m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = request_header_timeout)]
    request_header_timeout: Duration,
    /// A connection with no open request or stream for this long is closed (GOAWAY on
    /// HTTP/2). 1s to 24h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = connection_idle_timeout)]
    connection_idle_timeout: Duration,
}

impl ConnectionArgs {
    pub fn apply(&self, limits: &mut proxy::ConnectionLimits) {
        limits.max_connections = self.max_connections as usize;
        limits.max_connections_per_peer = self.max_connections_per_peer as usize;
        limits.request_header_timeout = self.request_header_timeout;
        limits.idle_timeout = self.connection_idle_timeout;
    }
}

/// A duration flag within `[min, max]`.
pub fn bounded(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value < min || value > max {
        return Err(format!(
            "{text:?} is out of range: {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(value)
}

fn request_header_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, Duration::from_secs(1), Duration::from_secs(300))
}

fn connection_idle_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, Duration::from_secs(1), Duration::from_secs(24 * 3600))
}

/// `--stream-idle-timeout` of `esprit proxy`: 1s to 24h.
pub fn stream_idle_timeout(text: &str) -> Result<Duration, String> {
    bounded(text, Duration::from_secs(1), Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(request_header_timeout("10s"), Ok(Duration::from_secs(10)));
        assert!(request_header_timeout("0s").is_err());
        assert!(request_header_timeout("6m").is_err());
        assert!(connection_idle_timeout("25h").is_err());
        assert_eq!(stream_idle_timeout("5m"), Ok(Duration::from_secs(300)));
        assert!(stream_idle_timeout("40000000000s").is_err());
    }
}
