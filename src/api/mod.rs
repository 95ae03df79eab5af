//! The custom resources of `ai.fireweave.io/v1alpha1`: what users apply and what workers read back.
//!
//! Every type here is also the worker contract: a Job's `spec.json` is the CR itself, so the dataset, train
//! and quantize steps deserialize these same structs. Doc comments on fields are the `kubectl explain` text.

pub mod common;
pub mod conditions;
pub mod crdgen;
pub mod dataset;
pub mod evaluation;
pub mod model_serving;
pub mod training_run;
pub mod validate;

pub use common::*;
pub use conditions::*;
pub use dataset::{Dataset, DatasetSpec, DatasetStatus};
pub use model_serving::{ModelServing, ModelServingSpec, ModelServingStatus, ServedModel};
pub use training_run::{TrainingRun, TrainingRunSpec, TrainingRunStatus};

/// API group of every fireweave-ai resource.
pub const GROUP: &str = "ai.fireweave.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
