//! The request body the proxy sends to the backend: the client's frames passed through, with the
//! trailers sanitized like the headers (a client must not vouch for itself in any part of the
//! request), and, for a `grpc-web-text` call, its base64 decoded as it streams.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::grpc_web::TextDecoder;
use crate::headers;

pin_project_lite::pin_project! {
    /// A client's request body on its way to the backend.
    pub(crate) struct SanitizedBody {
        #[pin]
        inner: Incoming,
        text: Option<TextDecoder>,
        // Sent as an empty body, the client's never read (a CORS preflight passed to the backend),
        // or as `replacement` (an HTTP/JSON call's message, the client's body read already).
        empty: bool,
        replacement: Option<Bytes>,
    }
}

impl SanitizedBody {
    pub(crate) fn new(inner: Incoming) -> Self {
        Self {
            inner,
            text: None,
            empty: false,
            replacement: None,
        }
    }

    /// The backend gets an empty body, whatever the client sent.
    pub(crate) fn emptied(mut self) -> Self {
        self.empty = true;
        self
    }

    /// The backend gets `bytes` as the whole body, whatever is left of the client's.
    pub(crate) fn replaced_by(mut self, bytes: Bytes) -> Self {
        self.empty = true;
        self.replacement = Some(bytes);
        self
    }

    /// The body is gRPC-Web text: its data frames are decoded on the way. Broken base64 fails
    /// the body, which resets the backend's stream.
    pub(crate) fn decoding_text(mut self, decoder: TextDecoder) -> Self {
        self.text = Some(decoder);
        self
    }
}

impl Body for SanitizedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        if *this.empty {
            return Poll::Ready(this.replacement.take().map(|bytes| Ok(Frame::data(bytes))));
        }
        loop {
            let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => return Poll::Ready(Some(Err(Box::new(err)))),
                None => {
                    if let Some(decoder) = this.text.as_ref() {
                        decoder.finish()?;
                    }
                    return Poll::Ready(None);
                }
            };
            let frame = match (frame.into_data(), this.text.as_mut()) {
                (Ok(data), Some(decoder)) => {
                    let decoded = decoder.decode(&data)?;
                    if decoded.is_empty() {
                        continue;
                    }
                    Frame::data(decoded)
                }
                (Ok(data), None) => Frame::data(data),
                (Err(frame), _) => match frame.into_trailers() {
                    Ok(mut trailers) => {
                        headers::sanitize_trailers(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                },
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        // A text body that ended inside a base64 group is not over: the next poll reports it.
        (self.empty && self.replacement.is_none())
            || (!self.empty
                && self.inner.is_end_stream()
                && self.text.as_ref().is_none_or(TextDecoder::is_empty))
    }

    fn size_hint(&self) -> SizeHint {
        if self.empty {
            SizeHint::with_exact(self.replacement.as_ref().map_or(0, |b| b.len() as u64))
        } else if self.text.is_some() {
            // Decoding changes the length.
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
