//! The TrainingRun as the train worker reads it: the custom resource itself ([`TrainingRun`]), from the
//! `spec.json` the operator renders or from a manifest a person hands over (YAML or JSON).
//!
//! Defaults live on the CRD types (the seed notebook's); this module only loads the document and checks what
//! the API server would have checked (CEL rules) for manifests that never went through one.

use crate::api::training_run::{BaseQuantization, LoraSpec};
use crate::api::{GROUP, TrainingRun};
use crate::controller::training_run::build::{DATASET_DIGEST_ANNOTATION, DATASET_URI_ANNOTATION};
use std::path::{Path, PathBuf};

pub use crate::api::training_run::PROJECTIONS;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: neither YAML nor JSON: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and checks a TrainingRun. YAML is a superset of JSON, so one parser takes both.
pub fn load(path: &Path) -> Result<TrainingRun, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |message: String| SpecError::Invalid {
        path: path.to_owned(),
        message,
    };
    let doc: serde_json::Value = serde_yaml::from_str(&text).map_err(|source| SpecError::Parse {
        path: path.to_owned(),
        source,
    })?;
    // The derived Deserialize ignores apiVersion and kind; a Dataset handed over by mistake must not train.
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("TrainingRun");
    let api_version = doc.get("apiVersion").and_then(|k| k.as_str()).unwrap_or(GROUP);
    if kind != "TrainingRun" || !api_version.starts_with(GROUP) {
        return Err(invalid(format!(
            "is a {api_version} {kind}, not an {GROUP} TrainingRun"
        )));
    }
    let tr: TrainingRun = serde_json::from_value(doc).map_err(|e| invalid(format!("not a TrainingRun: {e}")))?;
    validate(&tr).map_err(invalid)?;
    Ok(tr)
}

/// The checks the CRD's schema and CEL rules make, plus the name check CEL cannot express cheaply.
pub fn validate(tr: &TrainingRun) -> Result<(), String> {
    if tr.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err("metadata.name is required: the run's folder is runs/<namespace>/<name>".into());
    }
    let s = &tr.spec;
    if s.base_model.path.is_some() == s.base_model.hugging_face.is_some() {
        return Err("spec.baseModel sets exactly one of path or huggingFace".into());
    }
    if let Some(hf) = &s.base_model.hugging_face
        && (hf.repo.split('/').count() != 2 || hf.repo.split('/').any(str::is_empty))
    {
        return Err(format!(
            "spec.baseModel.huggingFace.repo {:?} is not of the form owner/name",
            hf.repo
        ));
    }
    validate_lora(&s.lora)?;
    let h = &s.hyperparameters;
    for (value, field) in [
        (h.epochs, "epochs"),
        (h.batch_size, "batchSize"),
        (h.gradient_accumulation, "gradientAccumulation"),
        (h.max_seq_length, "maxSeqLength"),
    ] {
        if value == 0 {
            return Err(format!("spec.hyperparameters.{field} must be positive"));
        }
    }
    if h.max_steps == Some(0) {
        return Err("spec.hyperparameters.maxSteps must be positive when set".into());
    }
    if !(h.learning_rate > 0.0 && h.learning_rate.is_finite()) {
        return Err("spec.hyperparameters.learningRate must be positive".into());
    }
    // NaN fails these as well as negative values do.
    let non_negative = |x: f64| x.is_finite() && x >= 0.0;
    if !non_negative(h.weight_decay) || h.max_grad_norm.is_nan() || h.max_grad_norm < 0.0 {
        return Err("spec.hyperparameters.weightDecay and maxGradNorm must not be negative".into());
    }
    if s.checkpoint_every_steps == 0 {
        return Err("spec.checkpointEverySteps must be positive".into());
    }
    Ok(())
}

fn validate_lora(l: &LoraSpec) -> Result<(), String> {
    if l.r == 0 {
        return Err("spec.lora.r must be positive".into());
    }
    if !(0.0..1.0).contains(&l.dropout) {
        return Err(format!("spec.lora.dropout {} is not in [0, 1)", l.dropout));
    }
    if l.target_modules.is_empty() {
        return Err("spec.lora.targetModules needs at least one module".into());
    }
    for m in &l.target_modules {
        if !PROJECTIONS.contains(&m.as_str()) {
            return Err(format!(
                "spec.lora.targetModules: unknown module {m:?} (known: {})",
                PROJECTIONS.join(", ")
            ));
        }
    }
    Ok(())
}

/// `metadata.namespace`, or `default` for a manifest without one.
pub fn namespace(tr: &TrainingRun) -> &str {
    tr.metadata.namespace.as_deref().unwrap_or("default")
}

/// `metadata.name` (checked non-empty by [`validate`]).
pub fn name(tr: &TrainingRun) -> &str {
    tr.metadata.name.as_deref().unwrap_or_default()
}

/// The run's folder relative to the artifact root: `runs/<namespace>/<name>` (the quantize step reads
/// `merged/` from the same place).
pub fn run_dir(tr: &TrainingRun) -> PathBuf {
    PathBuf::from("runs").join(namespace(tr)).join(name(tr))
}

/// The dataset build the operator chose for this attempt, from the annotations it writes into spec.json.
pub fn dataset_annotation(tr: &TrainingRun) -> (Option<&str>, Option<&str>) {
    let ann = tr.metadata.annotations.as_ref();
    let get = |key: &str| {
        ann.and_then(|a| a.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    (get(DATASET_URI_ANNOTATION), get(DATASET_DIGEST_ANNOTATION))
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

    fn parse(yaml: &str) -> TrainingRun {
        serde_yaml::from_str(yaml).expect("parses")
    }

    const MINIMAL: &str = "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {name: r}\n\
                           spec:\n  baseModel: {path: m}\n  datasetRef: {name: d}\n";

    #[test]
    fn defaults_are_the_seed_notebooks() {
        let tr = parse(MINIMAL);
        validate(&tr).unwrap();
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
        let tr: TrainingRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "fw", "namespace": "ai", "annotations": {
                "ai.fireweave.io/dataset-uri": "datasets/ai/fw/abc", "ai.fireweave.io/dataset-digest": "sha256:abc"}},
            "spec": {"baseModel": {"huggingFace": {"repo": "meta-llama/Llama-3.1-8B-Instruct"}},
                     "datasetRef": {"name": "fw"}, "baseQuantization": "none",
                     "lora": {"r": 8, "alpha": 16, "useRslora": true}}
        }))
        .unwrap();
        validate(&tr).unwrap();
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
            ("lora: {targetModules: [qkv]}", "unknown module \"qkv\""),
            ("lora: {r: 0}", "spec.lora.r must be positive"),
            ("lora: {dropout: 1.0}", "spec.lora.dropout"),
            (
                "hyperparameters: {batchSize: 0}",
                "spec.hyperparameters.batchSize must be positive",
            ),
            ("hyperparameters: {learningRate: 0}", "learningRate must be positive"),
            ("checkpointEverySteps: 0", "checkpointEverySteps must be positive"),
        ];
        for (extra, want) in cases {
            let tr = parse(&format!("{MINIMAL}  {extra}\n"));
            let err = validate(&tr).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let both = parse(&MINIMAL.replace("{path: m}", "{path: m, huggingFace: {repo: a/b}}"));
        assert!(validate(&both).unwrap_err().contains("exactly one"));
        let bad_repo = parse(&MINIMAL.replace("{path: m}", "{huggingFace: {repo: llama}}"));
        assert!(validate(&bad_repo).unwrap_err().contains("owner/name"));
        let unnamed = parse(&MINIMAL.replace("metadata: {name: r}", "metadata: {}"));
        assert!(validate(&unnamed).unwrap_err().contains("metadata.name"));
    }
}
