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
//!
//! Decisions are pure functions ([`admit`], [`next_step`], [`too_many_premature_resets`]); the
//! rest is the I/O shell around them.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

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

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Global,
    PerPeer,
}

/// May one more connection be admitted, given the counts before it?
pub fn admit(total: usize, from_peer: usize, limits: &ConnectionLimits) -> Result<(), Refusal> {
    if total >= limits.max_connections {
        Err(Refusal::Global)
    } else if from_peer >= limits.max_connections_per_peer {
        Err(Refusal::PerPeer)
    } else {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// The connections open at once, counted per server. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    server: &'static str,
    counts: Mutex<Counts>,
    refusals_log: RateLimitedLog,
}

impl Admission {
    /// `server` names the server in log lines (`proxy`, `key server`).
    pub fn new(limits: ConnectionLimits, server: &'static str) -> Arc<Self> {
        Arc::new(Self {
            limits,
            server,
            counts: Mutex::default(),
            refusals_log: RateLimitedLog::default(),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counting cannot panic half-way; a poisoned lock still holds consistent counts.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the connection in, or refuses it (logging, at most once a second, how many were
    /// refused). Drop the permit when the connection closes.
    pub fn try_admit(self: &Arc<Self>, peer: IpAddr) -> Option<Permit> {
        let verdict = {
            let mut counts = self.counts();
            let from_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
            let verdict = admit(counts.total, from_peer, &self.limits);
            if verdict.is_ok() {
                counts.total += 1;
                *counts.by_peer.entry(peer).or_insert(0) += 1;
            }
            verdict
        };
        match verdict {
            Ok(()) => Some(Permit {
                admission: self.clone(),
                peer,
            }),
            Err(refusal) => {
                if let Some(refused) = self.refusals_log.tick() {
                    let (limit, flag) = match refusal {
                        Refusal::Global => (self.limits.max_connections, "--max-connections"),
                        Refusal::PerPeer => (
                            self.limits.max_connections_per_peer,
                            "--max-connections-per-peer",
                        ),
                    };
                    tracing::warn!(
                        server = self.server,
                        %peer,
                        limit,
                        refused_since_last_line = refused,
                        "connection limit reached ({flag}); closing new connections"
                    );
                }
                None
            }
        }
    }

    /// Connections currently admitted.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

/// One admitted connection; counted until dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

/// At most one line a second; counts what it swallowed in between.
#[derive(Debug, Default)]
struct RateLimitedLog {
    /// Whole seconds since `EPOCH` of the last line written, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// `Some(events since the last line)` when a line may be written now.
    fn tick(&self) -> Option<u64> {
        let now = epoch().elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != now
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed) + 1)
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Envoy's premature-reset rule (`ConnectionManagerImpl::maybeDrainDueToPrematureResets`): once
/// `closed` streams reach `limit`, close when at least half were premature resets; before that,
/// close as soon as premature resets reach half of `limit`, since the ratio can no longer recover.
pub fn too_many_premature_resets(closed: u64, premature: u64, limit: u64) -> bool {
    premature > 0 && premature.saturating_mul(2) >= closed.max(limit)
}

/// What a connection's counters are, as [`next_step`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub accepted_at: Instant,
    /// Requests (HTTP/1.1) or streams (HTTP/2) whose headers arrived, ever.
    pub requests: u64,
    /// Requests or streams not finished yet (response body not done or dropped).
    pub active: usize,
    /// When `active` last dropped to zero.
    pub idle_since: Instant,
    /// Set when the premature-reset rule tripped.
    pub abusive: bool,
}

/// What the connection's driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing until this instant (or a change of the counters).
    WaitUntil(Instant),
    /// Nothing until the counters change.
    Wait,
    /// Close at once: no request ever arrived in time.
    CloseNoRequest,
    /// GOAWAY (HTTP/2) or close after the current response (HTTP/1.1).
    GoAway(GoAwayReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoAwayReason {
    Idle,
    PrematureResets,
}

/// The decision, from the counters and the clock.
pub fn next_step(now: Instant, s: &Snapshot, limits: &ConnectionLimits) -> Step {
    if s.abusive {
        return Step::GoAway(GoAwayReason::PrematureResets);
    }
    if s.requests == 0 {
        let deadline = s.accepted_at + limits.request_header_timeout;
        return if now >= deadline {
            Step::CloseNoRequest
        } else {
            Step::WaitUntil(deadline)
        };
    }
    if s.active > 0 {
        return Step::Wait;
    }
    let deadline = s.idle_since + limits.idle_timeout;
    if now >= deadline {
        Step::GoAway(GoAwayReason::Idle)
    } else {
        Step::WaitUntil(deadline)
    }
}

#[derive(Debug)]
struct Counters {
    requests: u64,
    active: usize,
    idle_since: Instant,
    closed: u64,
    premature: u64,
    abusive: bool,
}

/// One connection's counters, shared by its streams and its driver.
#[derive(Debug)]
pub struct ConnState {
    limits: ConnectionLimits,
    accepted_at: Instant,
    counters: Mutex<Counters>,
    changed: Notify,
}

impl ConnState {
    /// Starts the clock of a connection accepted now.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            limits,
            accepted_at: now,
            counters: Mutex::new(Counters {
                requests: 0,
                active: 0,
                idle_since: now,
                closed: 0,
                premature: 0,
                abusive: false,
            }),
            changed: Notify::new(),
        })
    }

    /// When the request-header deadline of this connection passes (for a TLS handshake).
    pub fn first_request_deadline(&self) -> Instant {
        self.accepted_at + self.limits.request_header_timeout
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Snapshot {
        let c = self.counters();
        Snapshot {
            accepted_at: self.accepted_at,
            requests: c.requests,
            active: c.active,
            idle_since: c.idle_since,
            abusive: c.abusive,
        }
    }

    fn open_stream(self: &Arc<Self>) -> StreamGuard {
        let first = {
            let mut c = self.counters();
            c.requests += 1;
            c.active += 1;
            c.requests == 1
        };
        // Only changes that move the driver's next step wake it: the first request (the
        // request-header deadline no longer applies) here; idleness and abuse in `close_stream`.
        // A pending idle deadline that passes while streams are open is re-checked then.
        if first {
            self.changed.notify_one();
        }
        StreamGuard {
            conn: self.clone(),
            opened_at: Instant::now(),
            completed: AtomicBool::new(false),
        }
    }

    fn close_stream(&self, opened_at: Instant, completed: bool) {
        let now = Instant::now();
        let premature = !completed
            && now.duration_since(opened_at) < self.limits.premature_reset_min_stream_lifetime;
        let (tripped, idle) = {
            let mut c = self.counters();
            c.active = c.active.saturating_sub(1);
            let idle = c.active == 0;
            if idle {
                c.idle_since = now;
            }
            c.closed += 1;
            if premature {
                c.premature += 1;
            }
            let trip = !c.abusive
                && too_many_premature_resets(
                    c.closed,
                    c.premature,
                    self.limits.premature_reset_total_stream_count,
                );
            if trip {
                c.abusive = true;
            }
            (trip.then_some((c.closed, c.premature)), idle)
        };
        if let Some((closed, premature)) = tripped {
            tracing::warn!(
                closed_streams = closed,
                premature_resets = premature,
                "too many streams reset by the client before their response; closing the connection"
            );
        }
        if idle || tripped.is_some() {
            self.changed.notify_one();
        }
    }
}

/// One request or stream, from its headers until its response completed or was dropped.
#[derive(Debug)]
struct StreamGuard {
    conn: Arc<ConnState>,
    opened_at: Instant,
    completed: AtomicBool,
}

impl StreamGuard {
    fn complete(&self) {
        self.completed.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.conn
            .close_stream(self.opened_at, self.completed.load(Ordering::Relaxed));
    }
}

/// Wraps a connection's service so that its streams are counted in `conn`.
pub fn track<S>(conn: Arc<ConnState>, service: S) -> Tracked<S> {
    Tracked { conn, service }
}

#[derive(Debug, Clone)]
pub struct Tracked<S> {
    conn: Arc<ConnState>,
    service: S,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.conn.open_stream();
        TrackedFuture {
            inner: self.service.call(request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; dropped before it answers, the stream counts as reset.
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<StreamGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, guard })))
    }
}

pin_project_lite::pin_project! {
    /// The response body; the stream counts as completed once it reached its end.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<StreamGuard>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let done = match &frame {
            None => true,
            Some(Ok(frame)) => frame.is_trailers(),
            Some(Err(_)) => false,
        };
        if done && let Some(guard) = this.guard {
            guard.complete();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end && let Some(guard) = &self.guard {
            guard.complete();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Tells every driven connection to finish (GOAWAY) and waits until they have.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<()>,
}

/// One connection's view of [`Drain`].
#[derive(Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(()).0,
        }
    }

    pub fn watcher(&self) -> DrainWatch {
        DrainWatch {
            rx: self.tx.subscribe(),
        }
    }

    /// Connections being driven.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Signals every connection, then waits until all have closed.
    pub async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

/// Serves `conn` under the connection's guards until it ends: closes it when no request arrives
/// in time, sends GOAWAY when it has been idle too long or its client resets too many streams
/// early (and closes it [`GOAWAY_GRACE`] later if it has not finished), and shuts it down
/// gracefully when `drain` fires. `permit` is held until the connection is gone.
pub async fn drive<C>(conn: C, state: Arc<ConnState>, mut drain: DrainWatch, permit: Option<Permit>)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let _permit = permit;
    tokio::pin!(conn);
    let mut draining = false;
    let mut hard_close: Option<Instant> = None;
    loop {
        let changed = state.changed.notified();
        tokio::pin!(changed);
        // Registered before the snapshot, so no change between the two is missed.
        changed.as_mut().enable();
        let step = if draining || hard_close.is_some() {
            Step::Wait
        } else {
            next_step(Instant::now(), &state.snapshot(), &state.limits)
        };
        let wake_at = match (step, hard_close) {
            (_, Some(at)) => Some(at),
            (Step::WaitUntil(at), None) => Some(at),
            (Step::Wait, None) => None,
            (Step::CloseNoRequest, None) => {
                tracing::debug!("no request headers before the deadline; closing the connection");
                return;
            }
            (Step::GoAway(reason), None) => {
                tracing::debug!(?reason, "closing the connection (GOAWAY)");
                conn.as_mut().graceful_shutdown();
                hard_close = Some(Instant::now() + GOAWAY_GRACE);
                continue;
            }
        };
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            changed = drain.rx.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = sleep => {
                if hard_close.is_some_and(|at| Instant::now() >= at) {
                    tracing::debug!("connection did not finish after GOAWAY; closing it");
                    return;
                }
            }
            () = &mut changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 3,
            max_connections_per_peer: 2,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn admission_table() {
        let l = limits();
        assert_eq!(admit(0, 0, &l), Ok(()));
        assert_eq!(admit(2, 1, &l), Ok(()));
        assert_eq!(admit(2, 2, &l), Err(Refusal::PerPeer));
        assert_eq!(admit(3, 0, &l), Err(Refusal::Global));
    }

    #[test]
    fn permits_count_per_peer_and_release() {
        let admission = Admission::new(limits(), "test");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admission.try_admit(a).unwrap();
        let _a2 = admission.try_admit(a).unwrap();
        assert!(admission.try_admit(a).is_none(), "per-peer limit");
        let b1 = admission.try_admit(b).unwrap();
        assert!(admission.try_admit(b).is_none(), "global limit");
        drop(a1);
        assert!(admission.try_admit(b).is_some(), "a slot was freed");
        drop(b1);
        assert_eq!(admission.open(), 1, "only a2 is left");
    }

    #[test]
    fn refusal_lines_are_rate_limited_and_count_what_they_swallowed() {
        let log = RateLimitedLog::default();
        assert_eq!(log.tick(), Some(1));
        // Within the same second: swallowed.
        for _ in 0..5 {
            if log.tick().is_some() {
                // The second turned over during the loop; a later line counts the rest.
                return;
            }
        }
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn premature_reset_rule_is_envoys() {
        // Below the total: half the limit of premature resets trips it.
        assert!(!too_many_premature_resets(10, 10, 500));
        assert!(!too_many_premature_resets(249, 249, 500));
        assert!(too_many_premature_resets(250, 250, 500));
        // Past the total: the ratio.
        assert!(!too_many_premature_resets(1000, 499, 500));
        assert!(too_many_premature_resets(1000, 500, 500));
        // Well-behaved connections never trip it.
        assert!(!too_many_premature_resets(1_000_000, 0, 500));
    }

    #[test]
    fn steps() {
        let l = ConnectionLimits::default();
        let t0 = Instant::now();
        let fresh = Snapshot {
            accepted_at: t0,
            requests: 0,
            active: 0,
            idle_since: t0,
            abusive: false,
        };
        assert_eq!(
            next_step(t0, &fresh, &l),
            Step::WaitUntil(t0 + l.request_header_timeout)
        );
        assert_eq!(
            next_step(t0 + l.request_header_timeout, &fresh, &l),
            Step::CloseNoRequest
        );
        let busy = Snapshot {
            requests: 1,
            active: 1,
            ..fresh
        };
        assert_eq!(next_step(t0 + l.idle_timeout * 2, &busy, &l), Step::Wait);
        let idle = Snapshot {
            requests: 1,
            ..fresh
        };
        assert_eq!(
            next_step(t0 + l.idle_timeout, &idle, &l),
            Step::GoAway(GoAwayReason::Idle)
        );
        let abusive = Snapshot {
            abusive: true,
            ..busy
        };
        assert_eq!(
            next_step(t0, &abusive, &l),
            Step::GoAway(GoAwayReason::PrematureResets)
        );
    }
}
