//! A TrainingRun's evaluation: what is measured on the held-out split after quantization, the gate a model
//! must pass before a ModelServing rolls it out, and the figures that go into status.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Quantization;
use crate::contract::Digest;

/// Measure the base model, the trained adapter and every exported GGUF on the Dataset's eval split, and gate
/// the rollout on the result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSpec {
    /// Run the evaluation (on by default). Off, a ModelServing serves this run's GGUF only with
    /// `spec.model.requireEvaluation: false`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At most this many eval conversations are used (the first ones of eval.jsonl), bounding the cost on a
    /// large split. The trainer's eval loss uses the same ones.
    #[serde(default = "default_max_examples")]
    #[x_kube(validation = Rule::new("self > 0").message("evaluation.maxExamples must be positive"))]
    pub max_examples: u32,
    /// What a model must meet to be rolled out.
    #[serde(default)]
    pub gate: Gate,
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_examples: default_max_examples(),
            gate: Gate::default(),
        }
    }
}

/// Thresholds of the evaluation gate. The defaults pass a healthy run and stop a diverged one, a
/// quantization that broke the model, and a chat template that differs between training and serving.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// The trained adapter's eval loss may exceed the base model's by at most this much (nats per assistant
    /// token). A fine-tune that made the held-out answers less likely than the base model did diverged.
    #[serde(default)]
    pub max_eval_loss_over_base: f64,
    /// The most a GGUF's eval loss may exceed the unquantized adapter's, per quantization (nats per assistant
    /// token). Types not listed use the built-in allowance (F16/BF16 0.02, Q8_0 0.05, Q6_K 0.1, Q5_K_M 0.2,
    /// Q4_K_M 0.35).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_loss_increase: BTreeMap<Quantization, f64>,
    /// The fine-tune's tool-call accuracy may be below the base model's by at most this much (0 to 1).
    #[serde(default = "default_tool_call_slack")]
    pub max_tool_call_accuracy_drop: f64,
    /// Every eval prompt must tokenize identically in training and in the built-in server (from the GGUF's
    /// own chat template).
    #[serde(default = "yes")]
    pub require_template_match: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            max_eval_loss_over_base: 0.0,
            max_loss_increase: BTreeMap::new(),
            max_tool_call_accuracy_drop: default_tool_call_slack(),
            require_template_match: true,
        }
    }
}

impl Gate {
    /// The allowance for one quantization: the spec's, else the built-in one.
    pub fn loss_increase_allowed(&self, q: Quantization) -> f64 {
        self.max_loss_increase.get(&q).copied().unwrap_or(match q {
            Quantization::F16 | Quantization::BF16 => 0.02,
            Quantization::Q8_0 => 0.05,
            Quantization::Q6K => 0.1,
            Quantization::Q5KM => 0.2,
            Quantization::Q4KM => 0.35,
        })
    }
}

/// Figures of one model on the eval conversations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelFigures {
    /// Mean cross-entropy over assistant tokens (the training mask), nats per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// exp(loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    /// Share of reference tool calls reproduced exactly (name, required arguments with the schema's types,
    /// values equal after normalization), 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_accuracy: Option<f64>,
    /// Share of those answers that parsed as a call of an offered tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_parse_rate: Option<f64>,
}

/// One GGUF file's figures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GgufEvaluation {
    pub quantization: Quantization,
    /// The file evaluated.
    pub digest: Digest,
    #[serde(flatten)]
    pub figures: ModelFigures,
    /// Eval loss minus the unquantized adapter's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_increase: Option<f64>,
    /// Whether its prompts tokenize exactly as in training (the built-in server's rendering of the GGUF's own
    /// chat template against the trainer's).
    pub template_match: bool,
}

/// The evaluation of the current attempt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// Whether every figure met the gate.
    pub passed: bool,
    /// What failed, one line per figure (empty when passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The base model.
    #[serde(default)]
    pub base: ModelFigures,
    /// The trained adapter, unquantized (the trainer's model).
    #[serde(default)]
    pub adapter: ModelFigures,
    /// Every exported GGUF.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gguf: Vec<GgufEvaluation>,
    /// Eval conversations used.
    #[serde(default)]
    pub examples: u32,
    /// Reference tool calls among them.
    #[serde(default)]
    pub tool_call_examples: u32,
    /// Wall time of the evaluation step.
    #[serde(default)]
    pub duration_seconds: f64,
}

fn yes() -> bool {
    true
}
fn default_max_examples() -> u32 {
    200
}
fn default_tool_call_slack() -> f64 {
    0.0
}
