//! Hugging Face model folders: `config.json` and (sharded) safetensors, read by memory map.
//!
//! Shared by the trainer (which turns these views into libtorch tensors) and the GGUF converter (which
//! quantizes straight from them), so neither ever holds a whole model in memory.

mod checkpoint;
mod config;

pub use checkpoint::{Checkpoint, CheckpointError, Dtype, TensorView};
pub use config::{ConfigError, LlamaConfig, RopeScaling};
