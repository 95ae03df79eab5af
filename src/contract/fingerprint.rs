//! The TrainingRun inputs fingerprint, in two layers that build on each other:
//!
//! - [`trained`]: what the adapter depends on — base model reference, LoRA shape, base quantization,
//!   hyperparameters, the system prompt, the dataset build. The trainer resumes only a checkpoint made with the same one, so a
//!   run whose export list changed re-exports from its finished checkpoint instead of training again.
//! - [`produced`]: `trained` plus what is made from the adapter and how it is judged (`export`,
//!   `evaluation`). The controller starts a new
//!   attempt when it changes; `fireweave-ai run` reruns the step when it (or the base model's files) changes.
//!
//! Neither includes placement (`resources`: moving a run to another node pool is no reason to retrain),
//! checkpoint frequency or artifact retention.

use serde::Serialize;

use super::Digest;
use crate::api::TrainingRunSpec;
use crate::api::evaluation::EvaluationSpec;
use crate::api::training_run::{BaseModel, BaseQuantization, Export, Hyperparameters, LoraSpec};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Trained<'a> {
    base_model: &'a BaseModel,
    lora: &'a LoraSpec,
    base_quantization: BaseQuantization,
    hyperparameters: &'a Hyperparameters,
    system_prompt: &'a str,
    dataset: &'a Digest,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Produced<'a> {
    trained: Digest,
    export: &'a Export,
    evaluation: &'a EvaluationSpec,
}

// Field order is the structs', so the JSON (and the digest) is stable across runs and builds.
fn digest_json<T: Serialize>(value: &T) -> Digest {
    Digest::of(serde_json::to_vec(value).unwrap_or_default())
}

/// What the adapter depends on.
pub fn trained(spec: &TrainingRunSpec, dataset: &Digest) -> Digest {
    digest_json(&Trained {
        base_model: &spec.base_model,
        lora: &spec.lora,
        base_quantization: spec.base_quantization,
        hyperparameters: &spec.hyperparameters,
        system_prompt: &spec.system_prompt,
        dataset,
    })
}

/// What the run's files depend on: [`trained`] and the export.
pub fn produced(spec: &TrainingRunSpec, dataset: &Digest) -> Digest {
    digest_json(&Produced {
        trained: trained(spec, dataset),
        export: &spec.export,
        evaluation: &spec.evaluation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TrainingRunSpec {
        serde_json::from_value(serde_json::json!({"baseModel": {"path": "m"}, "datasetRef": {"name": "d"}})).unwrap()
    }

    #[test]
    fn placement_and_checkpointing_do_not_count() {
        let d = Digest::of(b"dataset");
        let mut s = spec();
        s.resources.gpus = Some(4);
        s.checkpoint_every_steps = 7;
        assert_eq!(produced(&s, &d), produced(&spec(), &d));
        assert_eq!(trained(&s, &d), trained(&spec(), &d));
    }

    #[test]
    fn training_inputs_change_both_export_only_the_outer_layer() {
        let d = Digest::of(b"dataset");
        let mut s = spec();
        s.hyperparameters.learning_rate = 1e-3;
        assert_ne!(trained(&s, &d), trained(&spec(), &d));
        assert_ne!(produced(&s, &d), produced(&spec(), &d));
        let mut s = spec();
        s.export.gguf.pop();
        assert_eq!(trained(&s, &d), trained(&spec(), &d));
        assert_ne!(produced(&s, &d), produced(&spec(), &d));
        assert_ne!(trained(&spec(), &Digest::of(b"other")), trained(&spec(), &d));
    }
}
