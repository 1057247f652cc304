//! The per-connection driver and graceful shutdown of all connections.

use std::sync::Arc;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::GOAWAY_GRACE;
use crate::admission::Permit;
use crate::state::{ConnState, Step, next_step};

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
    // One timer for the connection's life, moved rather than replaced: moving a tokio timer to a
    // later instant is an atomic store, a new timer is an insertion into (and a removal from) the
    // runtime's timer wheel.
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        let changed = state.changed.notified();
        tokio::pin!(changed);
        // Registered before the snapshot, so no change between the two is missed.
        changed.as_mut().enable();
        let now = Instant::now();
        let step = if draining || hard_close.is_some() {
            Step::Wait
        } else {
            next_step(now, &state.snapshot(), &state.limits)
        };
        let wake_at = match (step, hard_close) {
            (_, Some(at)) => Some(at),
            (Step::WaitUntil(at), None) => Some(at),
            // Streams open: look again one idle timeout from now. A connection's idle deadline
            // is at least that far away, so its streams ending need not wake this loop (the
            // streams of a busy connection would otherwise wake it every time they all end).
            (Step::Wait, None) if !draining => now.checked_add(state.limits.idle_timeout),
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
        if let Some(at) = wake_at
            && armed != Some(at)
        {
            sleep.as_mut().reset(at);
        }
        armed = wake_at;
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
            () = sleep.as_mut(), if armed.is_some() => {
                // A fired timer stays ready: it is polled again only once reset.
                armed = None;
                if hard_close.is_some_and(|at| Instant::now() >= at) {
                    tracing::debug!("connection did not finish after GOAWAY; closing it");
                    return;
                }
            }
            () = &mut changed => {}
        }
    }
}
