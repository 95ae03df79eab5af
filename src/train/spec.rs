//! The TrainingRun as the train worker reads it: the custom resource itself ([`TrainingRun`]), loaded and
//! checked by the contract's one loader (`crate::contract::document`), plus the few facts the trainer
//! derives from it.

use crate::api::TrainingRun;
use crate::api::training_run::{BaseQuantization, LoraSpec};
use crate::contract::{annotations, layout};
use kube::ResourceExt;
use std::path::PathBuf;

pub use crate::api::training_run::PROJECTIONS;
pub use crate::contract::DocumentError as SpecError;

/// Reads and checks a TrainingRun (spec.json or a manifest, YAML or JSON).
pub fn load(path: &std::path::Path) -> Result<TrainingRun, SpecError> {
    crate::contract::document::load(path)
}

/// `metadata.namespace`, or `default` for a manifest without one.
pub fn namespace(tr: &TrainingRun) -> String {
    crate::contract::document::namespace_of(tr)
}

/// The run's folder relative to the artifact root: `runs/<namespace>/<name>`.
pub fn run_dir(tr: &TrainingRun) -> PathBuf {
    layout::run_dir(&namespace(tr), &tr.name_any())
}

/// The dataset build the operator chose for this attempt, from the annotations it writes into spec.json.
pub fn dataset_annotation(tr: &TrainingRun) -> (Option<&str>, Option<&str>) {
    let ann = tr.metadata.annotations.as_ref();
    let get = |key: &str| {
        ann.and_then(|a| a.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    (get(annotations::DATASET_URI), get(annotations::DATASET_DIGEST))
}

/// Whether each decoder layer is recomputed in the backward pass: as the spec says, else on for an NF4 base
/// (QLoRA exists to save memory; without recompute every dequantized weight would stay alive until backward).
pub fn recompute_layers(tr: &TrainingRun) -> bool {
    tr.spec
        .hyperparameters
        .gradient_checkpointing
        .unwrap_or(tr.spec.base_quantization == BaseQuantization::Nf4)
}

/// alpha/r, or alpha/√r with rank-stabilized LoRA (as PEFT computes `scaling`).
pub fn lora_scaling(l: &LoraSpec) -> f64 {
    let (alpha, r) = (f64::from(l.alpha), f64::from(l.r));
    if l.use_rslora { alpha / r.sqrt() } else { alpha / r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<TrainingRun, SpecError> {
        crate::contract::document::parse(text, std::path::Path::new("run.yaml"))
    }

    const MINIMAL: &str = "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\n\
                           spec:\n  baseModel: {path: m}\n  datasetRef: {name: d}\n";

    #[test]
    fn defaults_are_the_seed_notebooks() {
        let tr = load_text(MINIMAL).unwrap();
        let h = &tr.spec.hyperparameters;
        assert_eq!((h.epochs, h.batch_size, h.gradient_accumulation), (3, 2, 4));
        assert_eq!((h.learning_rate, h.weight_decay, h.warmup_steps), (2e-4, 0.01, 10));
        assert_eq!(h.max_seq_length, 2048);
        assert_eq!(
            (tr.spec.lora.r, tr.spec.lora.alpha, tr.spec.lora.dropout),
            (16, 16, 0.0)
        );
        assert_eq!(tr.spec.lora.target_modules, PROJECTIONS.map(String::from).to_vec());
        assert_eq!(tr.spec.checkpoint_every_steps, 50);
        assert_eq!(tr.spec.base_quantization, BaseQuantization::Nf4);
        assert!(
            recompute_layers(&tr),
            "an nf4 base recomputes layers unless told otherwise"
        );
        assert_eq!(namespace(&tr), "default");
        assert_eq!(run_dir(&tr), PathBuf::from("runs/default/r"));
        assert_eq!(lora_scaling(&tr.spec.lora), 1.0);
    }

    #[test]
    fn spec_json_as_the_operator_renders_it() {
        let doc = serde_json::json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "fw", "namespace": "ai", "annotations": {
                "ai.fireweave.io/dataset-uri": "datasets/ai/fw/abc", "ai.fireweave.io/dataset-digest": "sha256:abc"}},
            "spec": {"baseModel": {"huggingFace": {"repo": "meta-llama/Llama-3.1-8B-Instruct"}},
                     "datasetRef": {"name": "fw"}, "baseQuantization": "none",
                     "lora": {"r": 8, "alpha": 16, "useRslora": true}}
        });
        let tr = load_text(&doc.to_string()).unwrap();
        assert_eq!(
            dataset_annotation(&tr),
            (Some("datasets/ai/fw/abc"), Some("sha256:abc"))
        );
        assert!(!recompute_layers(&tr));
        assert!((lora_scaling(&tr.spec.lora) - 16.0 / 8f64.sqrt()).abs() < 1e-12);
        assert_eq!(tr.spec.base_model.hugging_face.as_ref().unwrap().revision, "main");
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let cases = [
            ("lora: {targetModules: [qkv]}", "spec.lora.targetModules: "),
            ("lora: {r: 0}", "spec.lora.r: lora.r must be positive"),
            ("lora: {dropout: 1.0}", "spec.lora.dropout"),
            (
                "hyperparameters: {batchSize: 0}",
                "hyperparameters.batchSize must be positive",
            ),
            ("hyperparameters: {learningRate: 0}", "learningRate must be positive"),
            (
                "hyperparameters: {maxSteps: 0}",
                "spec.hyperparameters.maxSteps: must be positive",
            ),
            ("checkpointEverySteps: 0", "checkpointEverySteps must be positive"),
        ];
        for (extra, want) in cases {
            let err = load_text(&format!("{MINIMAL}  {extra}\n")).unwrap_err().to_string();
            assert!(err.contains(want), "{extra}: {err}");
            assert!(err.starts_with("run.yaml: TrainingRun default/r: "), "{err}");
        }
        let both = load_text(&MINIMAL.replace("{path: m}", "{path: m, huggingFace: {repo: a/b}}"));
        assert!(both.unwrap_err().to_string().contains("exactly one"));
        let bad_repo = load_text(&MINIMAL.replace("{path: m}", "{huggingFace: {repo: llama}}"));
        assert!(bad_repo.unwrap_err().to_string().contains("owner/name"));
        let unnamed = load_text(&MINIMAL.replace("metadata: {name: r}", "metadata: {}"));
        assert!(unnamed.unwrap_err().to_string().contains("metadata.name"));
        let dataset = load_text(&MINIMAL.replace("kind: TrainingRun", "kind: Dataset"));
        assert!(dataset.is_err());
    }
}
