//! GGUF: the container llama.cpp and Ollama load. A hardened reader, a streaming writer, llama.cpp's
//! quantization kernels reproduced byte for byte, and single-pass conversion from Hugging Face checkpoints.

pub mod bench;
pub mod cli;
pub mod convert;
pub mod file;
pub mod mix;
pub mod quants;
pub mod tokenizer;
pub mod types;

pub use file::{FormatError, Gguf, TensorInfo, Value};
pub use mix::Mix;
pub use types::GgmlType;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(transparent)]
    Checkpoint(#[from] crate::hf::CheckpointError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error("checkpoint tensor {name} has no GGUF counterpart for the llama architecture")]
    UnknownTensor { name: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
}

/// A memory-mapped GGUF file, parsed.
pub struct MappedGguf {
    pub path: PathBuf,
    map: memmap2::Mmap,
}

impl MappedGguf {
    pub fn open(path: &std::path::Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated underneath us is the usual mmap caveat, accepted for
        // model files that are written once (by rename) and never modified in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let me = MappedGguf {
            path: path.to_owned(),
            map,
        };
        me.parse()?;
        Ok(me)
    }

    pub fn parse(&self) -> Result<Gguf<'_>, GgufError> {
        Gguf::parse(&self.map).map_err(|source| GgufError::Format {
            path: self.path.clone(),
            source,
        })
    }
}
