//! Compiles the two google.rpc files (`proto/google/rpc`) into a `FileDescriptorSet` the crate
//! embeds: the error body renders `grpc-status-details-bin` without the API's descriptor.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut compiler = protox::Compiler::new([manifest.join("proto")])?;
    compiler.include_imports(true);
    compiler.open_files(["google/rpc/status.proto", "google/rpc/error_details.proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("google_rpc.bin");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}
