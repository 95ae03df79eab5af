//! The Dataset resource as the worker reads it: the CR itself (`apiVersion`, `kind`, `metadata`, `spec`),
//! handed over as the operator's rendered spec.json or as a user's YAML/JSON manifest. The types are the CRD's
//! own (`crate::api::dataset`), so the cluster, the local pipeline and this worker read one schema.

use std::path::{Path, PathBuf};

use crate::api::Dataset;
use crate::api::dataset::DatasetSpec;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read dataset spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("dataset spec {path} is not a valid Dataset resource: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("dataset spec {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads a Dataset CR from YAML or JSON (JSON is YAML, so one parser does both).
pub fn load(path: &Path) -> Result<Dataset, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Dataset, SpecError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| SpecError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("Dataset");
    if kind != "Dataset" {
        return Err(SpecError::Invalid {
            path: path.into(),
            message: format!("kind is {kind}, expected Dataset"),
        });
    }
    let res: Dataset = serde_yaml::from_value(value).map_err(|e| SpecError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    check(&res.spec).map_err(|message| SpecError::Invalid {
        path: path.into(),
        message,
    })?;
    Ok(res)
}

/// The CRD's validation rules, re-checked here: the API server enforces them in a cluster, but the worker
/// also runs specs that never went through one (the local pipeline, `--input`).
pub fn check(spec: &DatasetSpec) -> Result<(), String> {
    if spec.sources.is_empty() && spec.synthesis.is_none() {
        return Err("a Dataset needs at least one entry in spec.sources or a spec.synthesis section".into());
    }
    for (i, s) in spec.sources.iter().enumerate() {
        let n = s.path.is_some() as u8 + s.config_map.is_some() as u8 + s.url.is_some() as u8;
        if n != 1 {
            return Err(format!(
                "spec.sources[{i}] must set exactly one of path, configMap, url"
            ));
        }
        if s.url.is_some() && s.sha256.as_deref().is_none_or(|h| h.len() != 64) {
            return Err(format!(
                "spec.sources[{i}]: a url source needs its sha256 (64 hex digits)"
            ));
        }
    }
    if !(0.0..1.0).contains(&spec.split.eval_fraction) {
        return Err(format!(
            "spec.split.evalFraction {} must be in [0, 1)",
            spec.split.eval_fraction
        ));
    }
    if spec.filters.min_quality_score > 100 {
        return Err("spec.filters.minQualityScore must be 0..=100".into());
    }
    let t = spec.filters.dedup.near_duplicate_threshold;
    if !(0.0..=1.0).contains(&t) {
        return Err(format!(
            "spec.filters.dedup.nearDuplicateThreshold {t} must be in [0, 1] (0 turns it off)"
        ));
    }
    if spec.filters.max_record_bytes == 0 {
        return Err("spec.filters.maxRecordBytes must be positive".into());
    }
    if let Some(s) = &spec.synthesis
        && (s.tokens_per_minute == 0 || s.batch_size == 0)
    {
        return Err("spec.synthesis.tokensPerMinute and batchSize must be positive".into());
    }
    Ok(())
}
