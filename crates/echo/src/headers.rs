//! The HTTP-level half of the echo: request headers come back as `echo-` response headers, and
//! trailers gain `echo-trailer: done` and `echo-trailer-bin`.
//!
//! This lives below tonic because tonic has no API for custom trailers on a successful call.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// The value of the `echo-trailer-bin` trailer, before base64.
pub const TRAILER_BIN_VALUE: &[u8] = &[0x00, 0xff, 0x10, 0x80];
/// `TRAILER_BIN_VALUE` as it travels: unpadded standard base64.
const TRAILER_BIN_WIRE: &str = "AP8QgA";

/// Adds the echo headers and trailers around an inner HTTP service.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoMetadataLayer;

impl<S> Layer<S> for EchoMetadataLayer {
    type Service = EchoMetadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EchoMetadata { inner }
    }
}

#[derive(Debug, Clone)]
pub struct EchoMetadata<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for EchoMetadata<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<WithEchoTrailers<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let echoed = echo_headers(request.headers());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let (mut parts, body) = response.into_parts();
            parts.headers.extend(echoed);
            Ok(http::Response::from_parts(
                parts,
                WithEchoTrailers { inner: body },
            ))
        })
    }
}

/// Every request header as `echo-<name>`, raw value bytes kept (so `-bin` values stay binary).
fn echo_headers(headers: &HeaderMap) -> HeaderMap {
    let mut echoed = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(name) = HeaderName::try_from(format!("echo-{name}")) {
            echoed.append(name, value.clone());
        }
    }
    echoed
}

pin_project_lite::pin_project! {
    /// A response body whose trailers frame (if it has one) gains the echo trailers. A
    /// trailers-only gRPC response has no trailers frame and is left alone.
    pub struct WithEchoTrailers<B> {
        #[pin]
        inner: B,
    }
}

impl<B> Body for WithEchoTrailers<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.project().inner.poll_frame(cx);
        polled.map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        trailers.insert("echo-trailer", HeaderValue::from_static("done"));
                        trailers.insert(
                            "echo-trailer-bin",
                            HeaderValue::from_static(TRAILER_BIN_WIRE),
                        );
                        Frame::trailers(trailers)
                    }
                    Err(data) => data,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
