//! LoRA / QLoRA fine-tuning of Llama-family models on libtorch (feature `train`).

pub mod weights;
