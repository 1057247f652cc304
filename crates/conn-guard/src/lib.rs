//! Connection guards shared by esprit's two servers (the proxy and the key server): what a client
//! may hold open, and for how long, before it sends anything useful.
//!
//! - [`Admission`]: a global connection limit and a per-peer-IP limit, checked at accept.
//! - [`ConnState`] + [`drive`]: per connection, a deadline until the first request's headers
//!   (hyper-util's auto builder otherwise waits forever to learn the protocol), an idle timeout
//!   once no request or stream is open (HTTP/2 connections get GOAWAY), and Envoy's
//!   premature-reset guard against "rapid reset" past the pending-accept limit: streams the client
//!   resets before their response completed, early in their life, are counted and the connection
//!   is closed when they dominate.
//! - [`Drain`]: graceful shutdown of every driven connection.
//! - [`tls`]: the `--tls-cert`/`--tls-key` loader and the handshake, for both listeners.
//!
//! Decisions are pure functions ([`admit`], [`next_step`], [`too_many_premature_resets`]); the
//! rest is the I/O shell around them.
mod admission;
mod drive;
mod state;
pub mod tls;
mod track;

use std::time::Duration;

pub use admission::{Admission, Admitted, Permit, Refusal, admit};
pub use drive::{Drain, DrainWatch, drive};
pub use state::{ConnState, GoAwayReason, Snapshot, Step, next_step, too_many_premature_resets};
pub use track::{Tracked, TrackedBody, TrackedFuture, track};

/// How long a connection that was told to go away (GOAWAY, or HTTP/1.1 close) may take to finish
/// before it is closed outright.
pub const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// The limits, as configured. Documented in README.md (flags of `esprit proxy` and
/// `esprit iam serve`, and the HTTP/2 limits table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, all peers together; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections open at once from one peer IP address.
    pub max_connections_per_peer: usize,
    /// From accept (TLS handshake included) until the first request's headers are complete.
    pub request_header_timeout: Duration,
    /// A connection with no open request or stream for this long is closed (GOAWAY on HTTP/2).
    pub idle_timeout: Duration,
    /// Envoy's `overload.premature_reset_total_stream_count`: see [`too_many_premature_resets`].
    pub premature_reset_total_stream_count: u64,
    /// Envoy's `overload.premature_reset_min_stream_lifetime_seconds`: a stream reset by the
    /// client before its response completed and younger than this is a premature reset.
    pub premature_reset_min_stream_lifetime: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            request_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            premature_reset_total_stream_count: 500,
            premature_reset_min_stream_lifetime: Duration::from_secs(1),
        }
    }
}
