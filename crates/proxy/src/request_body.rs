//! The request body the proxy sends to the backend: the client's frames passed through, with the
//! trailers sanitized like the headers (a client must not vouch for itself in any part of the
//! request).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::headers;

pin_project_lite::pin_project! {
    /// A client's request body on its way to the backend.
    pub(crate) struct SanitizedBody {
        #[pin]
        inner: Incoming,
    }
}

impl SanitizedBody {
    pub(crate) fn new(inner: Incoming) -> Self {
        Self { inner }
    }
}

impl Body for SanitizedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(self.project().inner.poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    headers::sanitize_trailers(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
