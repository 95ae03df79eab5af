//! Where things live on the artifact volume (and in a local run's artifact folder, laid out the same way).
//! Every path here is relative to the volume's root, which is what status URIs are relative to.
//!
//! ```text
//! datasets/<ns>/<name>/<hex digest>/     a dataset build (train.jsonl, eval.jsonl, rejected.jsonl, stats.json)
//! runs/<ns>/<name>/checkpoints/           the trainer's resumable checkpoints
//! runs/<ns>/<name>/adapter/               PEFT adapter
//! runs/<ns>/<name>/merged/                base + adapter, Hugging Face safetensors (input of quantize)
//! runs/<ns>/<name>/gguf/<name>-<Q>.gguf   one GGUF per quantization
//! runs/<ns>/<name>/report/                loss curve, metrics.json
//! models/huggingface/                     base models downloaded from the Hub
//! ```

use std::path::PathBuf;

use crate::api::Quantization;

/// Where the artifact volume is mounted in every worker Pod.
pub const ARTIFACTS_MOUNT: &str = "/artifacts";

/// The folder holding every build of one Dataset (`datasets/<ns>/<name>`).
pub fn dataset_builds(namespace: &str, name: &str) -> PathBuf {
    PathBuf::from("datasets").join(namespace).join(name)
}

/// The folder everything a TrainingRun produces goes to (`runs/<ns>/<name>`); deleting it with
/// `artifactRetention: Delete` removes the run's files and nothing else.
pub fn run_dir(namespace: &str, name: &str) -> PathBuf {
    PathBuf::from("runs").join(namespace).join(name)
}

/// The parts of a run folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunPart {
    Checkpoints,
    Adapter,
    Merged,
    Gguf,
    Report,
}

impl RunPart {
    pub fn folder(self) -> &'static str {
        match self {
            RunPart::Checkpoints => "checkpoints",
            RunPart::Adapter => "adapter",
            RunPart::Merged => "merged",
            RunPart::Gguf => "gguf",
            RunPart::Report => "report",
        }
    }
}

/// `runs/<ns>/<name>/<part>`.
pub fn run_part(namespace: &str, name: &str, part: RunPart) -> PathBuf {
    run_dir(namespace, name).join(part.folder())
}

/// The GGUF file of one quantization: `runs/<ns>/<name>/gguf/<name>-<Q>.gguf`.
pub fn gguf_file(namespace: &str, name: &str, quantization: &str) -> PathBuf {
    run_part(namespace, name, RunPart::Gguf).join(gguf_file_name(name, quantization))
}

/// `<name>-<Q>.gguf`: the model's name first, so files copied out of the volume still say what they are.
pub fn gguf_file_name(name: &str, quantization: &str) -> String {
    format!("{name}-{quantization}.gguf")
}

/// Base models fetched from the Hugging Face Hub, shared by every run on the volume.
pub fn hub_cache() -> PathBuf {
    PathBuf::from("models").join("huggingface")
}

/// The quantization a GGUF of ours carries in its name, if it is one we serve.
pub fn quantization_of(file_name: &str) -> Option<Quantization> {
    let stem = file_name.strip_suffix(".gguf")?;
    Quantization::ALL
        .into_iter()
        .find(|q| stem.ends_with(&format!("-{}", q.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_documented_ones() {
        assert_eq!(dataset_builds("ai", "fw"), PathBuf::from("datasets/ai/fw"));
        assert_eq!(
            run_part("ai", "fw", RunPart::Merged),
            PathBuf::from("runs/ai/fw/merged")
        );
        assert_eq!(
            gguf_file("ai", "fw", "Q4_K_M"),
            PathBuf::from("runs/ai/fw/gguf/fw-Q4_K_M.gguf")
        );
        assert_eq!(quantization_of("fw-Q4_K_M.gguf"), Some(Quantization::Q4KM));
        assert_eq!(quantization_of("fw-Q8_0.gguf"), Some(Quantization::Q8_0));
        assert_eq!(quantization_of("fw-F32.gguf"), None);
    }
}
