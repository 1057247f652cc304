//! Compiles `proto/echo.proto` with protox (no `protoc`), writes its encoded descriptor set to
//! `OUT_DIR`, and generates the tonic client and server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_file("echo.proto")?;
    std::fs::write(
        out_dir.join("echo_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        // Payloads as `Bytes`: ServerStream repeats one payload without copying it.
        .bytes(".esprit.echo.v1")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
