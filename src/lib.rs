//! fireweave-ai: curate a dataset, fine-tune a Llama-family model with LoRA/QLoRA, quantize it to GGUF and
//! serve it on the Ollama API — as Kubernetes resources or, with the same YAML, on one machine.

pub mod api;
pub mod artifact;
pub mod chat;
pub mod contract;
pub mod controller;
pub mod dataset;
pub mod doctor;
// The evaluation reads GGUF files with llama.cpp and encodes conversations with the trainer's tokenizer.
#[cfg(all(feature = "train", feature = "serve"))]
pub mod eval;
pub mod gguf;
pub mod hf;
// The local pipeline runs every worker in-process, so it needs both the trainer and the server.
#[cfg(all(feature = "train", feature = "serve"))]
pub mod local;
#[cfg(feature = "serve")]
pub mod serve;
pub mod telemetry;
#[cfg(feature = "train")]
pub mod train;
