//! Admission at accept: a global and a per-peer connection limit ([`admit`] decides).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ConnectionLimits;

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

    /// The next connection `listener` accepts that the limits let in, or `None` once `shutdown`
    /// resolves. Connections over a limit are closed at once (see [`Admission::try_admit`]);
    /// accept errors (out of file descriptors and the like) are logged and retried after 50 ms
    /// instead of spinning. Every server's accept loop is `while let Some(..) = accept(..)`.
    pub async fn accept(
        self: &Arc<Self>,
        listener: &tokio::net::TcpListener,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<Admitted> {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(server = self.server, error = %err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut *shutdown => return None,
            };
            if let Some(permit) = self.try_admit(peer.ip()) {
                return Some(Admitted {
                    stream,
                    peer,
                    permit,
                });
            }
        }
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

/// A connection let in by [`Admission::accept`]; its permit counts it until dropped.
#[derive(Debug)]
pub struct Admitted {
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: Permit,
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
}
