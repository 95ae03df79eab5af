//! LoRA / QLoRA fine-tuning of Llama-family models on libtorch (feature `train`): `fireweave-ai train`.
//!
//! Reads a TrainingRun (the CR the operator renders into spec.json), the dataset build the operator names,
//! and a base model (artifact volume or Hugging Face Hub); trains LoRA adapters on a frozen bf16/f32 or NF4
//! base with assistant-only loss; checkpoints atomically and resumes by itself; writes a PEFT adapter, the
//! merged model (input of `fireweave-ai quantize`) and a report; reports progress on /metrics and the result
//! in the termination message.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod export;
pub mod hub;
pub mod inputs;
pub mod lora;
pub mod metrics;
pub mod model;
pub mod nf4;
pub mod optim;
pub mod report;
pub mod run;
pub mod spec;
pub mod weights;

pub use bench::BenchArgs;
pub use run::{TrainArgs, TrainError, TrainOptions};

/// The train step as a Job runs it: load the TrainingRun, train, and end as the contract says (the result, or
/// the reason it failed — a libtorch error or any panic included — in the termination message).
pub fn main(args: &TrainArgs) -> Result<(), crate::contract::StepFailed> {
    crate::contract::run_step("train", &args.termination_log, || {
        let tr = spec::load(&args.spec)?;
        run::train(&tr, &args.options())
    })
    .map(|_| ())
}
