//! `TrainingRun`: a LoRA/QLoRA fine-tune of a base model on a Dataset, exported as adapter, merged checkpoint and GGUF.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ArtifactRef, ArtifactRetention, ComputeResources, Quantization, SecretKeyRef};

/// Fine-tunes a Llama-family model with LoRA (or QLoRA on an NF4 base) on a GPU node, checkpointing so a
/// preempted Pod resumes, then merges the adapter and quantizes the result to GGUF.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ai.fireweave.io",
    version = "v1alpha1",
    kind = "TrainingRun",
    doc = "A LoRA/QLoRA fine-tune of a Llama-family model on a Dataset, exported as a PEFT adapter, a merged checkpoint and GGUF files.",
    namespaced,
    status = "TrainingRunStatus",
    shortname = "fwtr",
    category = "fireweave",
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.attempt) || oldSelf.status.attempt == 0 || self.spec.baseModel == oldSelf.spec.baseModel").message("spec.baseModel cannot change once training has started; create a new TrainingRun for another base model").field_path(".spec.baseModel"),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","description":"Optimizer steps done/total","jsonPath":".status.progress.display"}"#,
    printcolumn = r#"{"name":"Loss","type":"number","jsonPath":".status.progress.loss"}"#,
    printcolumn = r#"{"name":"Eval Loss","type":"number","priority":1,"jsonPath":".status.evalLoss"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRunSpec {
    /// The model to fine-tune. Set exactly one of `path` or `huggingFace`. Cannot change once training started.
    pub base_model: BaseModel,
    /// The Dataset (same namespace) to train on; the run waits until it is Ready.
    pub dataset_ref: DatasetRef,
    /// Low-rank adapter shape.
    #[serde(default)]
    pub lora: LoraSpec,
    /// `nf4` (default) loads the frozen base in 4-bit NF4 (QLoRA: an 8B model trains in 16 GB of GPU memory);
    /// `none` keeps it in bf16.
    #[serde(default)]
    pub base_quantization: BaseQuantization,
    /// Optimizer and schedule.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// The system prompt a training conversation gets when it has none — the one the model will be served
    /// with, since both servers give a request without a system message the ModelServing's
    /// `spec.modelfile.system` (default: the seed's FireWeave prompt, as here). Empty: conversations are
    /// trained as they are.
    #[serde(default = "super::model_serving::default_system")]
    pub system_prompt: String,
    /// Save a resumable checkpoint every this many optimizer steps (preempted Pods resume from the last one).
    #[serde(default = "default_checkpoint_every_steps")]
    #[x_kube(validation = Rule::new("self > 0").message("checkpointEverySteps must be positive"))]
    pub checkpoint_every_steps: u32,
    /// What is produced after training.
    #[serde(default)]
    pub export: Export,
    /// The evaluation after quantization, and the gate a model must pass to be rolled out.
    #[serde(default)]
    pub evaluation: super::evaluation::EvaluationSpec,
    /// GPU placement and size of the training Pod.
    #[serde(default)]
    pub resources: ComputeResources,
    /// `Retain` (default) keeps checkpoints, adapter and GGUF files when this resource is deleted; `Delete`
    /// removes them.
    #[serde(default)]
    pub artifact_retention: ArtifactRetention,
}

/// The base model: a folder on the artifact volume, or a Hugging Face Hub repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.path) != has(self.huggingFace)").message("baseModel sets exactly one of path or huggingFace"))]
#[serde(rename_all = "camelCase")]
pub struct BaseModel {
    /// Hugging Face checkpoint folder (config.json, safetensors, tokenizer) relative to the artifact volume root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Hub repository, downloaded once into the volume's `models/` cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceModel>,
}

/// A model on the Hugging Face Hub.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceModel {
    /// Repository id, for example `meta-llama/Llama-3.1-8B-Instruct`.
    pub repo: String,
    /// Branch, tag or commit; pin a commit for reproducible runs.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Secret key holding a Hub token (gated models such as Llama need one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// A Dataset in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct DatasetRef {
    /// Name of the Dataset.
    pub name: String,
}

/// LoRA adapter shape.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoraSpec {
    /// Rank of the adapter matrices.
    #[serde(default = "default_r")]
    #[x_kube(validation = Rule::new("self > 0").message("lora.r must be positive"))]
    pub r: u32,
    /// Scale numerator: updates are scaled by alpha/r (alpha/sqrt(r) with useRslora).
    #[serde(default = "default_r")]
    pub alpha: u32,
    /// Dropout on the adapter input.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 1.0").message("lora.dropout is a probability in [0, 1)"))]
    pub dropout: f64,
    /// Linear layers that get adapters, by their Hugging Face names: any of q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj.
    #[serde(default = "default_target_modules")]
    // The API server prices a CEL rule by the longest list it could see; unbounded, these two rules were
    // estimated over the CRD's cost budget and kube-apiserver rejected the whole CRD.
    #[schemars(length(max = 7))]
    #[x_kube(
        validation = Rule::new("size(self) > 0").message("lora.targetModules needs at least one module"),
        validation = Rule::new("self.all(m, m in ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])").message("lora.targetModules entries must be among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
    )]
    pub target_modules: Vec<String>,
    /// Rank-stabilized LoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            r: default_r(),
            alpha: default_r(),
            dropout: 0.0,
            target_modules: default_target_modules(),
            use_rslora: false,
        }
    }
}

/// How the frozen base weights are held during training.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BaseQuantization {
    None,
    #[default]
    Nf4,
}

/// Optimizer and schedule. Defaults are the seed project's (effective batch 8, lr 2e-4, 3 epochs).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    /// Passes over the training set.
    #[serde(default = "default_epochs")]
    #[x_kube(validation = Rule::new("self > 0").message("hyperparameters.epochs must be positive"))]
    pub epochs: u32,
    /// Sequences per micro-batch.
    #[serde(default = "default_batch_size")]
    #[x_kube(validation = Rule::new("self > 0").message("hyperparameters.batchSize must be positive"))]
    pub batch_size: u32,
    /// Micro-batches per optimizer step (effective batch = batchSize × gradientAccumulation).
    #[serde(default = "default_gradient_accumulation")]
    #[x_kube(validation = Rule::new("self > 0").message("hyperparameters.gradientAccumulation must be positive"))]
    pub gradient_accumulation: u32,
    /// Peak AdamW learning rate.
    #[serde(default = "default_learning_rate")]
    #[x_kube(validation = Rule::new("self > 0.0").message("hyperparameters.learningRate must be positive"))]
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Steps of linear warm-up from 0 to learningRate.
    #[serde(default = "default_warmup_steps")]
    pub warmup_steps: u32,
    /// Longer conversations are truncated to this many tokens.
    #[serde(default = "default_max_seq_length")]
    #[x_kube(validation = Rule::new("self > 0").message("hyperparameters.maxSeqLength must be positive"))]
    pub max_seq_length: u32,
    /// Decay after warm-up: `linear` or `cosine`.
    #[serde(default)]
    pub lr_scheduler: LrScheduler,
    /// Gradient norm clipping threshold.
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// Seed for adapter initialization and data order.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Stop after this many optimizer steps (overrides epochs); for smoke runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Recompute each decoder layer's activations during the backward pass instead of keeping them: far less
    /// GPU memory for about a third more compute. Unset: on with an `nf4` base, off with `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_checkpointing: Option<bool>,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            gradient_accumulation: default_gradient_accumulation(),
            learning_rate: default_learning_rate(),
            weight_decay: default_weight_decay(),
            warmup_steps: default_warmup_steps(),
            max_seq_length: default_max_seq_length(),
            lr_scheduler: LrScheduler::default(),
            max_grad_norm: default_max_grad_norm(),
            seed: default_seed(),
            max_steps: None,
            gradient_checkpointing: None,
        }
    }
}

/// Learning-rate decay after warm-up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduler {
    #[default]
    Linear,
    Cosine,
}

/// Exports after training.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Also write the base with the adapter merged in (Hugging Face safetensors); GGUF needs it.
    #[serde(default = "default_merge")]
    pub merge: bool,
    /// GGUF files to produce, one per quantization type.
    #[serde(default = "default_gguf")]
    // Bounded for the same reason as lora.targetModules: the rule's estimated cost must fit the CRD budget.
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new("self.all(q, q in ['F16', 'BF16', 'Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M'])").message("export.gguf entries must be one of F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M"))]
    pub gguf: Vec<Quantization>,
}

impl Default for Export {
    fn default() -> Self {
        Self {
            merge: true,
            gguf: default_gguf(),
        }
    }
}

/// Where a TrainingRun stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRunStatus {
    /// `Pending`, `Training`, `Quantizing`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::api::conditions::Phase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Training attempt (1-based). A spec change that needs retraining starts the next one with a new Job.
    #[serde(default)]
    pub attempt: u32,
    /// Fingerprint of the inputs of the current attempt (training spec and dataset digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_digest: Option<crate::contract::Digest>,
    /// The Job of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The dataset artifact the current attempt trains on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<ArtifactRef>,
    /// Live training progress, scraped from the trainer's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Trainer Pods of this attempt that were preempted or evicted and replaced.
    #[serde(default)]
    pub restarts: u32,
    /// Produced files with digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<TrainingArtifacts>,
    /// Final training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_loss: Option<f64>,
    /// Final loss on the eval split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// The current attempt's evaluation (see `spec.evaluation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<super::evaluation::EvaluationStatus>,
    /// The newest artifacts that passed the evaluation gate: what a ModelServing serves while a newer attempt
    /// is evaluated or after one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<PassedArtifacts>,
}

/// The GGUF files of the newest attempt that passed its evaluation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassedArtifacts {
    /// The attempt that made them.
    pub attempt: u32,
    /// Its GGUF files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gguf: Vec<GgufArtifact>,
    /// Their chat format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_format: Option<crate::chat::ChatFormat>,
}

/// Training progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Optimizer steps done.
    pub step: u64,
    /// Optimizer steps planned.
    pub total_steps: u64,
    /// `step/total (percent%)`, for `kubectl get`.
    pub display: String,
    /// Current epoch (fractional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    /// Latest training loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Latest eval loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    /// Current learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Training throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Estimated seconds to the end of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
}

/// Files a TrainingRun produced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingArtifacts {
    /// PEFT-format LoRA adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<ArtifactRef>,
    /// Base with the adapter merged (Hugging Face safetensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<ArtifactRef>,
    /// GGUF files, one per quantization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gguf: Vec<GgufArtifact>,
    /// The chat format the model was trained in and its GGUF files carry (`llama3` or `chatml`): it picks the
    /// Modelfile template and stop strings of a ModelServing with `engine: ollama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_format: Option<crate::chat::ChatFormat>,
}

/// One GGUF file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GgufArtifact {
    /// Quantization type.
    pub quantization: Quantization,
    /// Path relative to the artifact volume root.
    pub uri: String,
    /// `sha256:<hex>` of the file.
    pub digest: crate::contract::Digest,
    /// File size.
    pub size_bytes: u64,
}

fn default_checkpoint_every_steps() -> u32 {
    50
}
fn default_revision() -> String {
    "main".to_string()
}
fn default_r() -> u32 {
    16
}
/// The seven projections of a Llama layer LoRA can target, in the order HF lists them (the seed targets all).
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

fn default_target_modules() -> Vec<String> {
    PROJECTIONS.map(String::from).to_vec()
}
fn default_epochs() -> u32 {
    3
}
fn default_batch_size() -> u32 {
    2
}
fn default_gradient_accumulation() -> u32 {
    4
}
fn default_learning_rate() -> f64 {
    2e-4
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_warmup_steps() -> u32 {
    10
}
fn default_max_seq_length() -> u32 {
    2048
}
fn default_max_grad_norm() -> f64 {
    1.0
}
fn default_seed() -> u64 {
    3407
}
fn default_merge() -> bool {
    true
}
fn default_gguf() -> Vec<Quantization> {
    vec![Quantization::Q4KM, Quantization::Q5KM, Quantization::Q8_0]
}

impl TrainingRunSpec {
    /// What the CRD's schema and CEL rules leave unchecked; the document loader runs it after them.
    pub fn semantic_errors(&self) -> Vec<super::validate::FieldError> {
        let mut errors = Vec::new();
        let mut push = |field: String, message: String| errors.push(super::validate::FieldError { field, message });
        if let Some(hf) = &self.base_model.hugging_face
            && (hf.repo.split('/').count() != 2 || hf.repo.split('/').any(str::is_empty))
        {
            push(
                "spec.baseModel.huggingFace.repo".into(),
                format!("{:?} is not of the form owner/name", hf.repo),
            );
        }
        let h = &self.hyperparameters;
        if h.max_steps == Some(0) {
            push(
                "spec.hyperparameters.maxSteps".into(),
                "must be positive when set".into(),
            );
        }
        if h.weight_decay < 0.0 {
            push("spec.hyperparameters.weightDecay".into(), "must not be negative".into());
        }
        if h.max_grad_norm < 0.0 {
            push(
                "spec.hyperparameters.maxGradNorm".into(),
                "must not be negative (0 turns clipping off)".into(),
            );
        }
        errors
    }
}
