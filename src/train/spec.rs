//! The TrainingRun as the train worker reads it: the CR (YAML or JSON) that the operator renders into
//! spec.json, or a manifest handed over directly. Defaults are the seed notebook's.

use super::lora::LoraConfig;
use super::optim::Scheduler;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRunManifest {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: TrainingRunSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceModel {
    pub repo: String,
    #[serde(default)]
    pub revision: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseModel {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub hugging_face: Option<HuggingFaceModel>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DatasetRef {
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseQuantization {
    #[default]
    None,
    Nf4,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Hyperparameters {
    pub epochs: usize,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub max_seq_length: usize,
    pub lr_scheduler: Scheduler,
    pub max_grad_norm: f64,
    pub seed: u64,
    pub max_steps: Option<usize>,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            epochs: 3,
            batch_size: 2,
            gradient_accumulation: 4,
            learning_rate: 2e-4,
            weight_decay: 0.01,
            warmup_steps: 10,
            max_seq_length: 2048,
            lr_scheduler: Scheduler::Linear,
            max_grad_norm: 1.0,
            seed: 3407,
            max_steps: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Export {
    pub merge: bool,
}

impl Default for Export {
    fn default() -> Self {
        Export { merge: true }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRunSpec {
    pub base_model: BaseModel,
    pub dataset_ref: DatasetRef,
    #[serde(default)]
    pub lora: LoraConfig,
    #[serde(default)]
    pub base_quantization: BaseQuantization,
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every_steps: usize,
    #[serde(default)]
    pub export: Export,
}

fn default_checkpoint_every() -> usize {
    50
}

impl TrainingRunManifest {
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_owned(),
            source,
        })?;
        // YAML is a superset of JSON: one parser takes spec.json and a manifest alike.
        let m: TrainingRunManifest = serde_yaml::from_str(&text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        m.validate().map_err(|message| SpecError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(m)
    }

    pub fn validate(&self) -> Result<(), String> {
        let s = &self.spec;
        let h = &s.hyperparameters;
        s.lora.validate()?;
        if s.base_model.path.is_none() && s.base_model.hugging_face.is_none() {
            return Err("spec.baseModel needs path or huggingFace".into());
        }
        if h.batch_size == 0 || h.gradient_accumulation == 0 || h.epochs == 0 {
            return Err("hyperparameters.batchSize, gradientAccumulation and epochs must be positive".into());
        }
        if h.max_seq_length < 2 {
            return Err("hyperparameters.maxSeqLength must be at least 2".into());
        }
        if h.learning_rate.is_nan() || h.learning_rate <= 0.0 {
            return Err("hyperparameters.learningRate must be positive".into());
        }
        if s.checkpoint_every_steps == 0 {
            return Err("checkpointEverySteps must be positive".into());
        }
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_notebooks() {
        let m: TrainingRunManifest = serde_yaml::from_str(
            "metadata: {name: r}\nspec:\n  baseModel: {path: m}\n  datasetRef: {name: d}\n",
        )
        .unwrap();
        m.validate().unwrap();
        let h = &m.spec.hyperparameters;
        assert_eq!((h.epochs, h.batch_size, h.gradient_accumulation), (3, 2, 4));
        assert_eq!((h.learning_rate, h.weight_decay, h.warmup_steps), (2e-4, 0.01, 10));
        assert_eq!((m.spec.lora.r, m.spec.lora.alpha), (16, 16.0));
        assert_eq!(m.spec.lora.target_modules.len(), 7);
        assert_eq!(m.spec.checkpoint_every_steps, 50);
        assert_eq!(m.namespace(), "default");
    }

    #[test]
    fn unknown_target_module_is_rejected() {
        let m: TrainingRunManifest = serde_yaml::from_str(
            "spec:\n  baseModel: {path: m}\n  datasetRef: {name: d}\n  lora: {targetModules: [qkv]}\n",
        )
        .unwrap();
        assert!(m.validate().unwrap_err().contains("unknown module \"qkv\""));
    }
}
