//! What the operator and its workers agree on, in one place both sides import (a worker never imports a
//! controller): the resource document a worker reads, the annotations the operator adds to it, where
//! artifacts live, how content is named ([`Digest`]), what each step reports and how it ends, and the
//! fingerprint of a TrainingRun's inputs. `fireweave-ai run` uses the same pieces to run the same workers
//! on one machine.

pub mod digest;
pub mod document;
pub mod fingerprint;
pub mod layout;
pub mod report;
pub mod results;

pub use digest::{Digest, DigestError};
pub use document::{DocumentError, Kind, Object};
pub use report::{StepFailed, StepResult, run_step};
pub use results::{DatasetResult, EvaluateResult, QuantizeResult, TrainResult};

/// Annotations the operator writes into a worker's document (never on the user's object).
pub mod annotations {
    /// The dataset build (`datasets/<ns>/<name>/<hex>`) this training attempt reads.
    pub const DATASET_URI: &str = "ai.fireweave.io/dataset-uri";
    /// Its digest (`sha256:<hex>`), checked by the trainer before it reads a line.
    pub const DATASET_DIGEST: &str = "ai.fireweave.io/dataset-digest";
}

#[cfg(test)]
mod tests {
    /// The arrows run one way: workers, the server and the local pipeline depend on the contract, never on
    /// the operator's controllers (which would drag kube-runtime's decisions into a worker image and let a
    /// controller change silently change what a worker reads).
    #[test]
    fn no_worker_imports_a_controller() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let needle = ["controller", "::"].concat();
        let mut offenders = Vec::new();
        for dir in [
            "dataset",
            "train",
            "gguf",
            "serve",
            "local",
            "contract",
            "artifact.rs",
            "chat",
            "hf",
        ] {
            let mut stack = vec![root.join(dir)];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
                } else if p.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if line.contains(&needle) && !line.trim_start().starts_with("//") {
                            offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "imports from src/controller:\n{}",
            offenders.join("\n")
        );
    }
}
