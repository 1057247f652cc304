//! The API descriptor: which services and methods exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost_reflect::DescriptorPool;
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::error::ConfigError;

/// A decoded descriptor pool together with the `FileDescriptorSet` bytes it came from.
///
/// The bytes feed the config id; the pool answers which services and methods exist and keeps
/// every option (including `google.api.http`) for later use such as transcoding.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pool: DescriptorPool,
    bytes: Vec<u8>,
}

impl Descriptor {
    /// Decodes a binary `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out`).
    pub fn from_file_descriptor_set(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        Self::from_sets(vec![("descriptor".to_owned(), bytes.into())])
    }

    /// Compiles `.proto` files in-process. Each file's directory is an include path; besides
    /// those, `google/api/annotations.proto`, `google/api/http.proto` (vendored here) and the
    /// `google/protobuf/*` well-known files can be imported.
    pub fn compile_protos(paths: &[impl AsRef<Path>]) -> Result<Self, ConfigError> {
        let label = paths
            .iter()
            .map(|p| p.as_ref().display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut files = Vec::new();
        let mut includes = BTreeSet::new();
        for path in paths {
            let path = path.as_ref();
            // Absolute paths so that every file lies under its own include directory.
            let absolute = std::fs::canonicalize(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            if let Some(dir) = absolute.parent() {
                includes.insert(dir.to_path_buf());
            }
            files.push(absolute);
        }
        let mut resolver = ChainFileResolver::new();
        for include in includes {
            resolver.add(IncludeFileResolver::new(include));
        }
        // After the user's include paths, so a checked-out googleapis wins over the vendored copy.
        resolver.add(VendoredGoogleApis);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(true);
        compiler
            .open_files(&files)
            .map_err(|source| ConfigError::ProtoCompile {
                path: label.clone(),
                source: Box::new(source),
            })?;
        // Encoded through the pool (not prost_types) so extension options survive.
        Self::from_sets(vec![(label, compiler.encode_file_descriptor_set())])
    }

    /// Decodes several `FileDescriptorSet`s into one pool; files present in more than one set
    /// are taken once. `label` names each set in errors.
    pub(crate) fn from_sets(sets: Vec<(String, Vec<u8>)>) -> Result<Self, ConfigError> {
        let mut pool = DescriptorPool::new();
        let mut bytes = Vec::new();
        for (label, set) in sets {
            // Decode straight from the bytes: going through prost_types would drop options.
            pool.decode_file_descriptor_set(set.as_slice())
                .map_err(|source| ConfigError::InvalidDescriptor {
                    path: label,
                    source,
                })?;
            // Concatenated FileDescriptorSet encodings are themselves one valid encoding.
            bytes.extend_from_slice(&set);
        }
        Ok(Self { pool, bytes })
    }

    /// Reads descriptor files: `.proto` files are compiled together, anything else is read as a
    /// binary `FileDescriptorSet`; all end up in one pool.
    pub(crate) fn load(paths: &[PathBuf]) -> Result<Self, ConfigError> {
        let (protos, sets): (Vec<&PathBuf>, Vec<&PathBuf>) = paths
            .iter()
            .partition(|p| p.extension().is_some_and(|ext| ext == "proto"));
        let mut encoded = Vec::new();
        if !protos.is_empty() {
            let compiled = Self::compile_protos(&protos)?;
            encoded.push((
                protos
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                compiled.bytes,
            ));
        }
        for path in sets {
            let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            encoded.push((path.display().to_string(), bytes));
        }
        Self::from_sets(encoded)
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The `FileDescriptorSet` encoding (the concatenation of all sets given).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Serves the two googleapis files nearly every HTTP-annotated proto imports.
struct VendoredGoogleApis;

const ANNOTATIONS_PROTO: &str = include_str!("../proto/google/api/annotations.proto");
const HTTP_PROTO: &str = include_str!("../proto/google/api/http.proto");

impl FileResolver for VendoredGoogleApis {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match name {
            "google/api/annotations.proto" => File::from_source(name, ANNOTATIONS_PROTO),
            "google/api/http.proto" => File::from_source(name, HTTP_PROTO),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}
