//! LoRA / QLoRA fine-tuning of Llama-family models on libtorch (feature `train`): `fireweave-ai train`.
//!
//! Reads a TrainingRun (the CR the operator renders into spec.json), the dataset build the operator names,
//! and a base model (artifact volume or Hugging Face Hub); trains LoRA adapters on a frozen bf16/f32 or NF4
//! base with assistant-only loss; checkpoints atomically and resumes by itself; writes a PEFT adapter, the
//! merged model (input of `fireweave-ai quantize`) and a report; reports progress on /metrics and the result
//! in the termination message.

pub mod artifact;
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
pub use run::{TrainArgs, TrainError};

/// Runs the train worker and reports as the operator contract asks: the JSON [`TrainResult`] as the last line
/// on stdout and in the termination log (when that file exists); on failure the error, in words, there.
///
/// [`TrainResult`]: crate::api::training_run::TrainResult
pub fn main(args: &TrainArgs) -> Result<(), TrainError> {
    let outcome = run::run(args);
    let line = match &outcome {
        Ok(result) => serde_json::to_string(result).expect("result serializes"),
        Err(e) => format!("train failed: {e}"),
    };
    if args.termination_log.exists()
        && let Err(e) = std::fs::write(&args.termination_log, &line)
    {
        tracing::warn!(path = %args.termination_log.display(), error = %e, "could not write the termination log");
    }
    if outcome.is_ok() {
        println!("{line}");
    }
    outcome.map(|_| ())
}
