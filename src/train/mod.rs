//! LoRA fine-tuning of Llama-family models on libtorch (feature `train`): `fireweave-ai train`.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod export;
pub mod lora;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod report;
pub mod run;
pub mod spec;
pub mod weights;

pub use bench::BenchArgs;
pub use run::{TrainArgs, TrainError};

/// Runs the train worker and reports its result as the contract asks: the JSON result in
/// `/dev/termination-log` when that file exists, and as the last line on stdout.
pub fn main(args: &TrainArgs) -> Result<(), TrainError> {
    let outcome = run::run(args);
    let line = match &outcome {
        Ok(result) => result.to_string(),
        Err(e) => serde_json::json!({"error": e.to_string()}).to_string(),
    };
    let log = std::path::Path::new("/dev/termination-log");
    if log.exists() {
        if let Err(e) = std::fs::write(log, &line) {
            tracing::warn!(error = %e, "could not write /dev/termination-log");
        }
    }
    println!("{line}");
    outcome.map(|_| ())
}
