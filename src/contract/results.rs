//! What each worker step reports when it succeeds: one type per step, written by [`super::report::run_step`]
//! into the termination message and read back by the operator (and returned directly to `fireweave-ai run`).

use serde::{Deserialize, Serialize};

use super::report::StepResult;
use crate::api::ArtifactRef;
use crate::api::dataset::DatasetStats;
use crate::api::training_run::GgufArtifact;

/// The dataset step: the content-addressed build and its counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatasetResult {
    pub artifact: ArtifactRef,
    #[serde(default)]
    pub stats: DatasetStats,
}

impl StepResult for DatasetResult {
    /// Topics are the part of the stats that grows with the data.
    fn shortened(&self) -> Option<Self> {
        let mut short = self.clone();
        short.stats.topics.clear();
        short.stats.score_histogram.clear();
        Some(short)
    }
}

/// The train step: adapter, merged checkpoint and the headline figures.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainResult {
    pub adapter: ArtifactRef,
    #[serde(default)]
    pub merged: Option<ArtifactRef>,
    #[serde(default)]
    pub final_loss: Option<f64>,
    #[serde(default)]
    pub eval_loss: Option<f64>,
    #[serde(default)]
    pub steps: u64,
    #[serde(default)]
    pub tokens: u64,
    /// The chat format it trained in (the template written into the merged checkpoint).
    #[serde(default)]
    pub chat_format: Option<crate::chat::ChatFormat>,
}

impl StepResult for TrainResult {}

/// The evaluate step: the figures of the base model, the adapter and every GGUF, and the gate's verdict.
pub type EvaluateResult = crate::api::evaluation::EvaluationStatus;

impl StepResult for EvaluateResult {}

/// The quantize step: one GGUF file per quantization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct QuantizeResult {
    pub gguf: Vec<GgufArtifact>,
}

impl StepResult for QuantizeResult {}
