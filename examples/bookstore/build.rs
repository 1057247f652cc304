//! Compiles `proto/bookstore.proto` without `protoc`: protox parses it (with the vendored
//! `google/api` files and protox's bundled well-known types), the encoded descriptor set is written
//! to `OUT_DIR` for reflection and for the proxy as its API descriptor, and tonic-prost-build
//! generates the Rust types and the client and server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for file in [
        "proto/bookstore.proto",
        "proto/google/api/annotations.proto",
        "proto/google/api/http.proto",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_file("bookstore.proto")?;
    // Encoded straight from the pool: going through `prost_types` would drop the
    // `google.api.http` extension options that transcoding needs.
    std::fs::write(
        out_dir.join("bookstore_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Generate code for bookstore.proto only; Empty maps to `()` and google.api is not needed.
    compiler.include_imports(false);
    tonic_prost_build::configure().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
