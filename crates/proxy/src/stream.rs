//! One call's clocks: the deadline (the caller's `grpc-timeout`, or the method's
//! `backend.rules[].deadline`) and the stream idle timeout (no frame in either direction).
//!
//! The request body is wrapped ([`RequestBody`]) so that client frames count as activity and so
//! that a call the proxy ended (deadline, idle, the client went away) resets its backend stream:
//! the wrapper fails, and hyper's client answers a failing request body with RST_STREAM.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::request_body::SanitizedBody;
use crate::wire::Rejection;

/// The deadline and idle timeout of one call of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallTimeouts {
    /// From the method's backend rule; the caller's shorter `grpc-timeout` wins.
    pub deadline: Option<Duration>,
    pub idle: Duration,
}

/// ESPv2's reading of `backend.rules[].deadline` (configgenerator `CalcIdleTimeout`): for a
/// unary method it is the call's deadline, and the idle timeout is raised to at least a second
/// past it so the deadline always answers first; for a streaming method it is the stream idle
/// timeout instead (a deadline would cut every long stream).
pub(crate) fn call_timeouts(
    rule_deadline: Option<Duration>,
    streaming: bool,
    default_idle: Duration,
) -> CallTimeouts {
    match (rule_deadline, streaming) {
        (Some(deadline), true) => CallTimeouts {
            deadline: None,
            idle: deadline,
        },
        (Some(deadline), false) => CallTimeouts {
            deadline: Some(deadline),
            idle: default_idle.max(deadline + Duration::from_secs(1)),
        },
        (None, _) => CallTimeouts {
            deadline: None,
            idle: default_idle,
        },
    }
}

/// The shorter of the caller's `grpc-timeout` and the method's deadline.
pub(crate) fn effective_deadline(
    client: Option<Duration>,
    method: Option<Duration>,
) -> Option<Duration> {
    match (client, method) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug)]
struct Activity {
    timeout: Duration,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last frame, either way.
    last: AtomicU64,
    ended: AtomicBool,
    request: AtomicWaker,
}

impl Activity {
    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn idle_deadline(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last.load(Ordering::Relaxed)) + self.timeout
    }
}

/// The activity of one forwarded call. Dropping it ends the call: the request body stops
/// and the backend stream is reset.
#[derive(Debug)]
pub(crate) struct CallActivity(Arc<Activity>);

impl CallActivity {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Self(Arc::new(Activity {
            timeout: idle_timeout,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            request: AtomicWaker::new(),
        }))
    }

    pub(crate) fn watch_request(&self, inner: SanitizedBody) -> RequestBody {
        RequestBody {
            inner,
            activity: self.0.clone(),
        }
    }

    /// Waits for the backend's response headers, up to the deadline and while the stream is
    /// not idle ([`Bound::poll_bound`], with this activity).
    pub(crate) fn bound<F: Future>(&self, deadline: Option<Instant>, response: F) -> Bound<F> {
        Bound {
            response,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            idle: tokio::time::sleep_until(self.0.idle_deadline()),
        }
    }

    /// A frame of the backend's response went through.
    pub(crate) fn touch(&self) {
        self.0.touch();
    }

    /// For the response body: the idle clock, polled with it.
    pub(crate) fn into_timer(self) -> IdleTimer {
        IdleTimer {
            activity: self,
            sleep: None,
        }
    }
}

impl Drop for CallActivity {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        self.0.request.wake();
    }
}

pin_project_lite::pin_project! {
    /// [`CallActivity::bound`]: written out rather than an `async fn` over `select!`, which
    /// holds the response future twice (argument and branch); every call in flight holds this.
    /// It borrows nothing, so the forwarding future can hold it beside the activity.
    pub(crate) struct Bound<F> {
        #[pin]
        response: F,
        // Boxed: most calls carry no deadline, and then hold no timer. The response body
        // keeps the same timer ([`Bound::take_deadline`]).
        deadline: Option<Pin<Box<Sleep>>>,
        #[pin]
        idle: Sleep,
    }
}

impl<F: Future> Bound<F> {
    /// The response, or the rejection of a call whose deadline passed or whose stream went
    /// idle first; `activity` is the call's, which made this.
    pub(crate) fn poll_bound(
        self: Pin<&mut Self>,
        activity: &CallActivity,
        cx: &mut Context<'_>,
    ) -> Poll<Result<F::Output, Rejection>> {
        let mut this = self.project();
        // The answer first: one that is ready wins over a timer that is too.
        if let Poll::Ready(response) = this.response.poll(cx) {
            return Poll::Ready(Ok(response));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(Rejection::DeadlineExceeded));
        }
        // The idle clock: when it rings, frames may have moved the deadline on.
        while this.idle.as_mut().poll(cx).is_ready() {
            let at = activity.0.idle_deadline();
            if Instant::now() >= at {
                return Poll::Ready(Err(Rejection::StreamIdleTimeout));
            }
            this.idle.as_mut().reset(at);
        }
        Poll::Pending
    }

    /// The deadline's timer, for the response body (one timer per call, not two).
    pub(crate) fn take_deadline(self: Pin<&mut Self>) -> Option<Pin<Box<Sleep>>> {
        self.project().deadline.take()
    }
}

/// The idle clock of a response body.
#[derive(Debug)]
pub(crate) struct IdleTimer {
    activity: CallActivity,
    /// Armed the first time the body waits for the backend: most responses are buffered whole
    /// by the time they are read, and then no timer is ever needed.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    /// True once no frame went either way for the idle timeout; otherwise arranges a wake-up.
    /// Called when the backend's body has nothing ready.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) => sleep,
            None => {
                let at = self.activity.0.idle_deadline();
                if Instant::now() >= at {
                    return true;
                }
                self.sleep.insert(Box::pin(tokio::time::sleep_until(at)))
            }
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let at = self.activity.0.idle_deadline();
            if Instant::now() >= at {
                return true;
            }
            sleep.as_mut().reset(at);
        }
    }

    pub(crate) fn touch(&self) {
        self.activity.touch();
    }
}

/// The call ended before its request body: what the backend's stream is reset for.
#[derive(Debug, thiserror::Error)]
#[error("the call ended before its request")]
pub(crate) struct CallEnded;

/// The client's request body on its way to the backend.
pub(crate) struct RequestBody {
    /// Trailers sanitized like the headers on the way.
    inner: SanitizedBody,
    activity: Arc<Activity>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        this.activity.request.register(cx.waker());
        if this.activity.ended.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(CallEnded))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.activity.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_espv2() {
        let idle = Duration::from_secs(300);
        let s = Duration::from_secs;
        assert_eq!(
            call_timeouts(None, false, idle),
            CallTimeouts {
                deadline: None,
                idle
            }
        );
        assert_eq!(
            call_timeouts(Some(s(10)), false, idle),
            CallTimeouts {
                deadline: Some(s(10)),
                idle
            }
        );
        assert_eq!(
            call_timeouts(Some(s(600)), false, idle),
            CallTimeouts {
                deadline: Some(s(600)),
                idle: s(601)
            }
        );
        assert_eq!(
            call_timeouts(Some(s(10)), true, idle),
            CallTimeouts {
                deadline: None,
                idle: s(10)
            }
        );
    }

    #[test]
    fn the_shorter_deadline_wins() {
        let s = Duration::from_secs;
        assert_eq!(effective_deadline(None, None), None);
        assert_eq!(effective_deadline(Some(s(1)), None), Some(s(1)));
        assert_eq!(effective_deadline(None, Some(s(2))), Some(s(2)));
        assert_eq!(effective_deadline(Some(s(3)), Some(s(2))), Some(s(2)));
        assert_eq!(effective_deadline(Some(s(1)), Some(s(2))), Some(s(1)));
    }
}
