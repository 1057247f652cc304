//! Before the proxy answers a call it rejects, it reads what is left of the request body, within a
//! small bound, and throws it away.
//!
//! Why: an HTTP/2 answer sent while the request stream is still open makes the `h2` crate reset
//! the stream; a request DATA frame that arrives after the stream has left h2's short list of
//! recently reset streams is then answered with another, library-initiated reset, and h2 closes
//! the whole connection (GOAWAY `ENHANCE_YOUR_CALM`, "too_many_internal_resets") once those reach
//! `max_local_error_reset_streams` over the connection's life. A client whose unary calls are
//! rejected at a high rate hit that in the soak test, losing whatever else was in flight on the
//! connection. A unary request's body is one small DATA frame right behind its headers: reading it
//! first ends the stream cleanly. A client that keeps its stream open, or sends more than the
//! bound, is answered anyway once the bound is reached.

use std::time::Duration;

use http_body::Body;
use http_body_util::BodyExt as _;

/// The most request bytes read and discarded before a rejection is sent.
pub(crate) const MAX_DRAIN_BYTES: usize = 64 * 1024;
/// The longest a rejection waits for the rest of its request.
pub(crate) const MAX_DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Reads and drops the rest of `body`, up to `max_bytes` and `max_wait`. Returns whether the
/// body ended within the bound.
pub(crate) async fn drain<B>(mut body: B, max_bytes: usize, max_wait: Duration) -> bool
where
    B: Body + Unpin,
    B::Data: bytes::Buf,
{
    if body.is_end_stream() {
        return true;
    }
    let read = async {
        let mut seen = 0usize;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        seen = seen.saturating_add(bytes::Buf::remaining(data));
                        if seen > max_bytes {
                            return false;
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(max_wait, read).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::StreamBody;

    type Chunks = futures::channel::mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>;

    fn body() -> (
        futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>,
        StreamBody<Chunks>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, StreamBody::new(rx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_is_read_to_its_end() {
        let (tx, body) = body();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))))
            .unwrap();
        drop(tx);
        assert!(drain(body, MAX_DRAIN_BYTES, MAX_DRAIN_WAIT).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_body_is_given_up_after_the_wait() {
        let (tx, body) = body();
        let started = tokio::time::Instant::now();
        assert!(!drain(body, MAX_DRAIN_BYTES, MAX_DRAIN_WAIT).await);
        assert_eq!(started.elapsed(), MAX_DRAIN_WAIT);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_body_is_given_up_after_the_byte_bound() {
        let (tx, body) = body();
        tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![0u8; 40 * 1024]))))
            .unwrap();
        tx.unbounded_send(Ok(Frame::data(Bytes::from(vec![0u8; 40 * 1024]))))
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(!drain(body, MAX_DRAIN_BYTES, MAX_DRAIN_WAIT).await);
        assert!(
            started.elapsed() < MAX_DRAIN_WAIT,
            "no wait past the byte bound"
        );
        drop(tx);
    }
}
