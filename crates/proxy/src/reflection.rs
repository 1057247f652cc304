//! gRPC server reflection answered by the proxy itself (`--reflection`), from the descriptor it
//! enforces: `grpcurl list` / `describe` work through the proxy while the backend's own
//! reflection, and every path outside the API, stay unreachable.
//!
//! Both protocol versions are served (`grpc.reflection.v1` and `v1alpha`, which grpcurl 1.8
//! speaks); their messages are the same on the wire, so one implementation answers both.
//! What is answered (pure, [`Index::answer`]):
//! - `list_services`: the configuration's `apis[].name`, nothing else (not the reflection
//!   service itself, not `grpc.health.v1`, not other services of the descriptor);
//! - `file_by_filename`, `file_containing_symbol`: the file, then those of its transitive
//!   dependencies not yet sent on this stream (as grpc-go does). Symbols are the descriptor's
//!   messages, fields, oneofs, enums, enum values and extensions, and the services of the API
//!   with their methods; a service outside the API is not a symbol here (`NOT_FOUND`);
//! - `file_containing_extension`, `all_extension_numbers_of_type`: from the descriptor's
//!   extensions; an unknown type or number is `NOT_FOUND`.
//!
//! Errors about one request are `error_response` messages and the stream goes on (the protocol's
//! way); a request over [`MAX_REQUEST_BYTES`] or beyond [`MAX_REQUESTS_PER_STREAM`] ends the stream.
//!
//! Checks: the reflection paths are routes of the table (`routes.rs`) carrying the JWT and
//! API-key rules of one method of the API (`--reflection-rules-of`, default the first method),
//! so a reload swaps reflection with the rest of the configuration.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use http::Response;
use prost::Message;
use tonic::codegen::Service;
use tonic::{Code, Status};
use tonic_reflection::pb::v1;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

use crate::body::{CallLog, ProxyBody};
use crate::request_body::SanitizedBody;

/// The paths reflection answers, and their selectors (for logs and metrics).
pub(crate) const V1_PATH: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
pub(crate) const V1ALPHA_PATH: &str =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
pub(crate) const V1_SELECTOR: &str = "grpc.reflection.v1.ServerReflection.ServerReflectionInfo";
pub(crate) const V1ALPHA_SELECTOR: &str =
    "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo";

/// The largest request message read (a request is a name or two): larger ones end the stream
/// with `RESOURCE_EXHAUSTED`.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Requests answered on one stream; the next ends it with `RESOURCE_EXHAUSTED` (grpcurl asks
/// a few per file of the API).
pub const MAX_REQUESTS_PER_STREAM: usize = 1024;

/// One encoded file of the descriptor and the names of the files it imports.
struct File {
    bytes: Bytes,
    dependencies: Vec<String>,
}

/// What reflection answers from, built once per configuration.
pub(crate) struct Index {
    services: Vec<String>,
    files: HashMap<String, File>,
    /// Fully qualified symbol → the name of the file defining it.
    symbols: HashMap<String, String>,
    /// Every message type, for `all_extension_numbers_of_type`.
    messages: HashSet<String>,
    /// Extended message → extension number → the name of the file defining the extension.
    extensions: HashMap<String, HashMap<i32, String>>,
}

impl Index {
    /// The configuration's API services and its descriptor.
    pub(crate) fn new(config: &service_config::ServiceConfig) -> Self {
        let services: Vec<String> = config.apis().iter().map(|api| api.name.clone()).collect();
        let pool = config.descriptor_pool();
        let files = pool
            .files()
            .map(|file| {
                let entry = File {
                    bytes: Bytes::from(file.encode_to_vec()),
                    dependencies: file.dependencies().map(|d| d.name().to_owned()).collect(),
                };
                (file.name().to_owned(), entry)
            })
            .collect();
        let messages = pool
            .all_messages()
            .map(|m| m.full_name().to_owned())
            .collect();
        let mut symbols = HashMap::new();
        let mut define = |name: &str, file: &prost_reflect::FileDescriptor| {
            symbols.insert(name.to_owned(), file.name().to_owned());
        };
        for service in pool.services() {
            if services.iter().any(|api| api == service.full_name()) {
                define(service.full_name(), &service.parent_file());
                for method in service.methods() {
                    define(method.full_name(), &service.parent_file());
                }
            }
        }
        for message in pool.all_messages() {
            let file = message.parent_file();
            define(message.full_name(), &file);
            for field in message.fields() {
                define(field.full_name(), &file);
            }
            for oneof in message.oneofs() {
                define(oneof.full_name(), &file);
            }
        }
        for enumeration in pool.all_enums() {
            let file = enumeration.parent_file();
            define(enumeration.full_name(), &file);
            for value in enumeration.values() {
                define(value.full_name(), &file);
            }
        }
        let mut extensions: HashMap<String, HashMap<i32, String>> = HashMap::new();
        for extension in pool.all_extensions() {
            let file = extension.parent_file();
            define(extension.full_name(), &file);
            if let Ok(number) = i32::try_from(extension.number()) {
                extensions
                    .entry(extension.containing_message().full_name().to_owned())
                    .or_default()
                    .insert(number, file.name().to_owned());
            }
        }
        Self {
            services,
            files,
            symbols,
            messages,
            extensions,
        }
    }

    /// The answer to one request of a stream; `sent` holds the files already sent on it.
    pub(crate) fn answer(
        &self,
        request: Option<&MessageRequest>,
        sent: &mut HashSet<String>,
    ) -> MessageResponse {
        let found = match request {
            None => Err(error(
                Code::InvalidArgument,
                "no message_request".to_owned(),
            )),
            Some(MessageRequest::ListServices(_)) => {
                return MessageResponse::ListServicesResponse(v1::ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| v1::ServiceResponse { name: name.clone() })
                        .collect(),
                });
            }
            Some(MessageRequest::FileByFilename(name)) => self
                .files
                .contains_key(name)
                .then(|| self.file_and_dependencies(name, sent))
                .ok_or_else(|| not_found(format!("file not found: {name}"))),
            Some(MessageRequest::FileContainingSymbol(symbol)) => self
                .symbols
                .get(symbol)
                .map(|file| self.file_and_dependencies(file, sent))
                .ok_or_else(|| not_found(format!("symbol not found: {symbol}"))),
            Some(MessageRequest::FileContainingExtension(wanted)) => self
                .extensions
                .get(&wanted.containing_type)
                .and_then(|numbers| numbers.get(&wanted.extension_number))
                .map(|file| self.file_and_dependencies(file, sent))
                .ok_or_else(|| {
                    not_found(format!(
                        "extension not found: {} of {}",
                        wanted.extension_number, wanted.containing_type
                    ))
                }),
            Some(MessageRequest::AllExtensionNumbersOfType(name)) => {
                return self.extension_numbers(name);
            }
        };
        match found {
            Ok(files) => MessageResponse::FileDescriptorResponse(v1::FileDescriptorResponse {
                file_descriptor_proto: files,
            }),
            Err(err) => MessageResponse::ErrorResponse(err),
        }
    }

    fn extension_numbers(&self, name: &str) -> MessageResponse {
        // A message of the descriptor without extensions has none; anything else is not found.
        if !self.messages.contains(name) {
            return MessageResponse::ErrorResponse(not_found(format!("type not found: {name}")));
        }
        let mut numbers: Vec<i32> = self
            .extensions
            .get(name)
            .map(|numbers| numbers.keys().copied().collect())
            .unwrap_or_default();
        numbers.sort_unstable();
        MessageResponse::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
            base_type_name: name.to_owned(),
            extension_number: numbers,
        })
    }

    /// `name` (always), then its transitive dependencies not in `sent`, depth first.
    fn file_and_dependencies(&self, name: &str, sent: &mut HashSet<String>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        sent.insert(name.to_owned());
        let mut pending = vec![name.to_owned()];
        while let Some(next) = pending.pop() {
            let Some(file) = self.files.get(&next) else {
                continue;
            };
            out.push(file.bytes.to_vec());
            for dependency in &file.dependencies {
                if sent.insert(dependency.clone()) {
                    pending.push(dependency.clone());
                }
            }
        }
        out
    }
}

fn error(code: Code, message: String) -> v1::ErrorResponse {
    v1::ErrorResponse {
        error_code: code as i32,
        error_message: message,
    }
}

fn not_found(message: String) -> v1::ErrorResponse {
    error(Code::NotFound, message)
}

/// Which version of the protocol a reflection route speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V1Alpha,
}

/// The reflection service of one route: its version and the configuration's index.
#[derive(Clone)]
pub(crate) struct Reflection {
    pub version: Version,
    pub index: Arc<Index>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A stream's answers: one per request, in order, within the stream's bounds.
fn respond<R>(index: Arc<Index>, requests: R) -> ResponseStream<v1::ServerReflectionResponse>
where
    R: Stream<Item = Result<v1::ServerReflectionRequest, Status>> + Send + Unpin + 'static,
{
    use futures::StreamExt;
    struct Reading<R> {
        index: Arc<Index>,
        requests: R,
        sent: HashSet<String>,
        answered: usize,
    }
    let state = Some(Reading {
        index,
        requests,
        sent: HashSet::new(),
        answered: 0,
    });
    Box::pin(futures::stream::unfold(state, |state| async move {
        let mut state = state?;
        let request = match state.requests.next().await {
            Some(Ok(request)) => request,
            None => return None,
            Some(Err(status)) => return Some((Err(status), None)),
        };
        if state.answered >= MAX_REQUESTS_PER_STREAM {
            let status = Status::resource_exhausted(format!(
                "more than {MAX_REQUESTS_PER_STREAM} reflection requests on one stream"
            ));
            return Some((Err(status), None));
        }
        state.answered += 1;
        let answer = state
            .index
            .answer(request.message_request.as_ref(), &mut state.sent);
        let response = v1::ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(answer),
        };
        Some((Ok(response), Some(state)))
    }))
}

/// The same message in the other version's types: both are the same on the wire.
fn recode<A: Message, B: Message + Default>(message: &A) -> Result<B, Status> {
    B::decode(message.encode_to_vec().as_slice())
        .map_err(|_| Status::internal("reflection message conversion failed"))
}

#[derive(Clone)]
struct Service1(Arc<Index>);

#[tonic::async_trait]
impl v1::server_reflection_server::ServerReflection for Service1 {
    type ServerReflectionInfoStream = ResponseStream<v1::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: tonic::Request<tonic::Streaming<v1::ServerReflectionRequest>>,
    ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, Status> {
        Ok(tonic::Response::new(respond(
            self.0.clone(),
            request.into_inner(),
        )))
    }
}

#[derive(Clone)]
struct Service1Alpha(Arc<Index>);

#[tonic::async_trait]
impl v1alpha::server_reflection_server::ServerReflection for Service1Alpha {
    type ServerReflectionInfoStream = ResponseStream<v1alpha::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: tonic::Request<tonic::Streaming<v1alpha::ServerReflectionRequest>>,
    ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, Status> {
        use futures::StreamExt;
        // Requests are read as v1 (same wire format) and answers written back as v1alpha.
        let requests = request
            .into_inner()
            .map(|request| request.and_then(|request| recode(&request)));
        let answers = respond(self.0.clone(), requests)
            .map(|answer| answer.and_then(|response| recode(&response)));
        Ok(tonic::Response::new(Box::pin(answers)))
    }
}

/// Answers a reflection call that passed the route's checks.
pub(crate) async fn serve(
    reflection: &Reflection,
    parts: http::request::Parts,
    body: SanitizedBody,
    log: CallLog,
) -> Response<ProxyBody> {
    let request = http::Request::from_parts(parts, body);
    let index = reflection.index.clone();
    let response = match reflection.version {
        Version::V1 => {
            let mut service =
                v1::server_reflection_server::ServerReflectionServer::new(Service1(index))
                    .max_decoding_message_size(MAX_REQUEST_BYTES);
            call(&mut service, request).await
        }
        Version::V1Alpha => {
            let mut service = v1alpha::server_reflection_server::ServerReflectionServer::new(
                Service1Alpha(index),
            )
            .max_decoding_message_size(MAX_REQUEST_BYTES);
            call(&mut service, request).await
        }
    };
    let (parts, body) = response.into_parts();
    let body = ProxyBody::local(body, &parts.headers, log);
    Response::from_parts(parts, body)
}

async fn call<S>(
    service: &mut S,
    request: http::Request<SanitizedBody>,
) -> Response<tonic::body::Body>
where
    S: Service<
            http::Request<SanitizedBody>,
            Response = Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
{
    if let Err(never) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        match never {}
    }
    match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index() -> Index {
        let yaml = "\
type: google.api.Service
config_version: 3
name: bookstore.endpoints.example.cloud.goog
apis:
- name: endpoints.examples.bookstore.Bookstore
usage:
  rules:
  - selector: \"*\"
    allow_unregistered_calls: true
";
        let descriptor =
            service_config::Descriptor::from_file_descriptor_set(bookstore::FILE_DESCRIPTOR_SET)
                .unwrap();
        Index::new(&service_config::from_yaml(yaml, descriptor).unwrap())
    }

    fn files(answer: MessageResponse) -> Vec<String> {
        let MessageResponse::FileDescriptorResponse(files) = answer else {
            panic!("not files: {answer:?}");
        };
        files
            .file_descriptor_proto
            .iter()
            .map(|bytes| Named::decode(bytes.as_slice()).unwrap().name)
            .collect()
    }

    /// `FileDescriptorProto.name`, the one field these tests read.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }

    fn error_code(answer: MessageResponse) -> i32 {
        let MessageResponse::ErrorResponse(err) = answer else {
            panic!("not an error: {answer:?}");
        };
        err.error_code
    }

    #[test]
    fn lists_only_the_api() {
        let answer = index().answer(
            Some(&MessageRequest::ListServices(String::new())),
            &mut HashSet::new(),
        );
        let MessageResponse::ListServicesResponse(list) = answer else {
            panic!("{answer:?}");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["endpoints.examples.bookstore.Bookstore"]);
    }

    #[test]
    fn a_file_comes_with_its_dependencies_once_per_stream() {
        let index = index();
        let mut sent = HashSet::new();
        let symbol = MessageRequest::FileContainingSymbol(
            "endpoints.examples.bookstore.Bookstore.ListShelves".to_owned(),
        );
        let first = files(index.answer(Some(&symbol), &mut sent));
        assert!(first[0].ends_with("bookstore.proto"), "{first:?}");
        assert!(first.len() > 1, "dependencies are sent too: {first:?}");
        let again = files(index.answer(Some(&symbol), &mut sent));
        assert_eq!(
            again,
            first[..1],
            "dependencies already sent are not repeated"
        );
        let by_name = MessageRequest::FileByFilename(first[1].clone());
        assert_eq!(files(index.answer(Some(&by_name), &mut sent))[0], first[1]);
    }

    #[test]
    fn unknown_names_are_not_found() {
        let index = index();
        let not_found = Code::NotFound as i32;
        for request in [
            MessageRequest::FileContainingSymbol("no.Such".to_owned()),
            MessageRequest::FileByFilename("no/such.proto".to_owned()),
            MessageRequest::AllExtensionNumbersOfType("no.Such".to_owned()),
            // A symbol, but not a message type.
            MessageRequest::AllExtensionNumbersOfType(
                "endpoints.examples.bookstore.Bookstore".to_owned(),
            ),
            MessageRequest::FileContainingExtension(v1::ExtensionRequest {
                containing_type: "endpoints.examples.bookstore.Shelf".to_owned(),
                extension_number: 999,
            }),
        ] {
            assert_eq!(
                error_code(index.answer(Some(&request), &mut HashSet::new())),
                not_found,
                "{request:?}"
            );
        }
        assert_eq!(
            error_code(index.answer(None, &mut HashSet::new())),
            Code::InvalidArgument as i32
        );
    }

    #[test]
    fn extensions_are_answered_from_the_descriptor() {
        let index = index();
        // `google.api.http` extends MethodOptions (the Bookstore's annotations import it).
        let numbers = index.answer(
            Some(&MessageRequest::AllExtensionNumbersOfType(
                "google.protobuf.MethodOptions".to_owned(),
            )),
            &mut HashSet::new(),
        );
        let MessageResponse::AllExtensionNumbersResponse(numbers) = numbers else {
            panic!("{numbers:?}");
        };
        assert!(numbers.extension_number.contains(&72295728), "{numbers:?}");
        let file = files(index.answer(
            Some(&MessageRequest::FileContainingExtension(
                v1::ExtensionRequest {
                    containing_type: "google.protobuf.MethodOptions".to_owned(),
                    extension_number: 72295728,
                },
            )),
            &mut HashSet::new(),
        ));
        assert_eq!(file[0], "google/api/annotations.proto");
        // A message without extensions has none.
        let none = index.answer(
            Some(&MessageRequest::AllExtensionNumbersOfType(
                "endpoints.examples.bookstore.Shelf".to_owned(),
            )),
            &mut HashSet::new(),
        );
        let MessageResponse::AllExtensionNumbersResponse(none) = none else {
            panic!("{none:?}");
        };
        assert!(none.extension_number.is_empty());
    }
}
