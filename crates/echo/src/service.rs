//! The `Echo` service: what each call kind answers.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt as _, stream};
use tonic::metadata::{KeyAndValueRef, MetadataMap};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::pb::echo_server::Echo;
use crate::pb::{EchoRequest, EchoResponse};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send + 'static>>;

/// Implements the generated `Echo` trait. Stateless.
#[derive(Debug, Clone, Copy)]
pub struct EchoService {
    reflect: Reflect,
}

/// Whether replies say what the server received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflect {
    /// The request's ASCII metadata in each reply's `metadata` field (and, with
    /// [`crate::EchoMetadataLayer`], every request header echoed back): for tests.
    Metadata,
    /// Replies carry the payload only, so every call costs the same whatever its headers: for
    /// benchmarks, where proxies add headers of their own.
    Nothing,
}

impl Default for EchoService {
    fn default() -> Self {
        Self::new(Reflect::Metadata)
    }
}

impl EchoService {
    pub fn new(reflect: Reflect) -> Self {
        Self { reflect }
    }

    fn metadata_of(&self, metadata: &MetadataMap) -> HashMap<String, String> {
        match self.reflect {
            Reflect::Metadata => ascii_metadata(metadata),
            Reflect::Nothing => HashMap::new(),
        }
    }
}

/// The ASCII entries of `metadata`, one value per key (the last one wins).
fn ascii_metadata(metadata: &MetadataMap) -> HashMap<String, String> {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => value
                .to_str()
                .ok()
                .map(|value| (key.as_str().to_owned(), value.to_owned())),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect()
}

/// The status a request asks for, if any.
fn requested_failure(request: &EchoRequest) -> Option<Status> {
    (request.fail_code != 0).then(|| {
        Status::new(
            Code::from_i32(request.fail_code),
            request.fail_message.clone(),
        )
    })
}

async fn pause(request: &EchoRequest) {
    if request.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(request.sleep_ms)).await;
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let metadata = self.metadata_of(request.metadata());
        let request = request.into_inner();
        pause(&request).await;
        if let Some(status) = requested_failure(&request) {
            return Err(status);
        }
        Ok(Response::new(EchoResponse {
            payload: request.payload,
            metadata,
            index: 0,
        }))
    }

    type ServerStreamStream = ResponseStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let mut metadata = Some(self.metadata_of(request.metadata()));
        let request = request.into_inner();
        let failure = requested_failure(&request);
        if request.count == 0 {
            pause(&request).await;
            return match failure {
                Some(status) => Err(status),
                None => Ok(Response::new(Box::pin(stream::empty()))),
            };
        }
        // `count` messages, then the requested failure (if any) as the final status.
        let messages = stream::iter(0..request.count).then(move |index| {
            let request = request.clone();
            let metadata = metadata.take().unwrap_or_default();
            async move {
                pause(&request).await;
                Ok(EchoResponse {
                    payload: request.payload,
                    metadata,
                    index,
                })
            }
        });
        let tail = stream::iter(failure.map(Err));
        Ok(Response::new(Box::pin(messages.chain(tail))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        let metadata = self.metadata_of(request.metadata());
        let mut inbound = request.into_inner();
        let mut payload = Vec::new();
        let mut index = 0u32;
        while let Some(message) = inbound.message().await? {
            pause(&message).await;
            if let Some(status) = requested_failure(&message) {
                return Err(status);
            }
            payload.extend_from_slice(&message.payload);
            index += 1;
        }
        Ok(Response::new(EchoResponse {
            payload: payload.into(),
            metadata,
            index,
        }))
    }

    type BidiStream = ResponseStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let metadata = self.metadata_of(request.metadata());
        let inbound = request.into_inner();
        // State: the inbound stream, the next index, the metadata still to send, and whether the
        // call has ended with an error.
        let outbound = stream::unfold(
            (inbound, 0u32, Some(metadata), false),
            |(mut inbound, index, mut metadata, ended)| async move {
                if ended {
                    return None;
                }
                let message = match inbound.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => return None,
                    Err(status) => return Some((Err(status), (inbound, index, metadata, true))),
                };
                pause(&message).await;
                if let Some(status) = requested_failure(&message) {
                    return Some((Err(status), (inbound, index, metadata, true)));
                }
                let response = EchoResponse {
                    payload: message.payload,
                    metadata: metadata.take().unwrap_or_default(),
                    index,
                };
                Some((Ok(response), (inbound, index + 1, metadata, false)))
            },
        );
        Ok(Response::new(Box::pin(outbound)))
    }
}
