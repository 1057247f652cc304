//! The Bookstore sample of Google Cloud Endpoints, as a gRPC server and client in Rust: the backend
//! that esprit's end-to-end tests and tutorials put behind the proxy.
//!
//! It serves the `endpoints.examples.bookstore.Bookstore` API (the ESP sample's proto, package,
//! messages and HTTP bindings unchanged) over h2c from a SQLite database, plus the standard gRPC
//! health service and server reflection (v1 and v1alpha, so grpcurl can list and call it).
//! [`FILE_DESCRIPTOR_SET`] is the API descriptor (imports and source info included) that a service
//! config points at. It deliberately does no authentication, TLS or HTTP/JSON transcoding: those
//! are the proxy's job.

pub mod server;
pub mod service;
pub mod store;

/// Generated messages, client (`bookstore_client`) and server (`bookstore_server`).
pub mod pb {
    tonic::include_proto!("endpoints.examples.bookstore");
}

/// The encoded `FileDescriptorSet` of `proto/bookstore.proto` with its imports and source info,
/// what `protoc --include_imports --include_source_info --descriptor_set_out` would write.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bookstore_descriptor.bin"));

/// The fully qualified service name.
pub const SERVICE_NAME: &str = "endpoints.examples.bookstore.Bookstore";

/// The canonical UPPER_SNAKE name of a gRPC status code (`PermissionDenied` →
/// `PERMISSION_DENIED`), as grpcurl prints it: derived from tonic's variant name, so the sample
/// keeps no table of its own (the proxy's `code_name` is the table; its tests check that both
/// agree on every code).
pub fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

pub use server::{RunningServer, ServeError, serve};
pub use service::BookstoreService;
pub use store::{DbLocation, Store, StoreError};
