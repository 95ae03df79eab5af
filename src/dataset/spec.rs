//! The Dataset resource as the worker reads it: the CR itself (`apiVersion`, `kind`, `metadata`, `spec`),
//! handed over as the operator's rendered spec.json or as a user's YAML/JSON manifest. Defaults are the seed's.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read dataset spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("dataset spec {path} is not a valid Dataset resource: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("dataset spec {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A Dataset custom resource (`ai.fireweave.io/v1alpha1`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetResource {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: DatasetSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            name: default_name(),
            namespace: default_namespace(),
        }
    }
}

fn default_name() -> String {
    "dataset".into()
}
fn default_namespace() -> String {
    "default".into()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub synthesis: Option<SynthesisSpec>,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub split: Split,
    /// Declared tools (OpenAI function JSON). Empty means the seed's three FireWeave tools.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// Also write `train.openai.jsonl` / `eval.openai.jsonl` in OpenAI `messages` form.
    #[serde(default)]
    pub openai_output: bool,
}

/// Where records come from: exactly one of `path`, `configMap`, `url`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub config_map: Option<ConfigMapSource>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub format: InputFormat,
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
}

/// The shape of the records in a source; `auto` looks at each record's keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    #[default]
    Auto,
    Qa,
    Sharegpt,
    Openai,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    #[serde(default = "default_min_score")]
    pub min_quality_score: u8,
    #[serde(default = "default_min_answer_chars")]
    pub min_answer_chars: usize,
    #[serde(default = "default_true")]
    pub reject_placeholders: bool,
    #[serde(default)]
    pub dedup: Dedup,
    /// Records larger than this (bytes of JSON) are rejected unread: one runaway line must not exhaust memory.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            min_quality_score: default_min_score(),
            min_answer_chars: default_min_answer_chars(),
            reject_placeholders: true,
            dedup: Dedup::default(),
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

fn default_min_score() -> u8 {
    50
}
fn default_min_answer_chars() -> usize {
    40
}
fn default_true() -> bool {
    true
}
fn default_max_record_bytes() -> usize {
    1 << 20
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dedup {
    #[serde(default = "default_true")]
    pub exact: bool,
    /// Estimated Jaccard similarity of word shingles at or above which two records join one cluster.
    /// `1.0` still catches variants that differ only in whitespace or punctuation; `0` disables the stage.
    #[serde(default = "default_near")]
    pub near_duplicate_threshold: f64,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            exact: true,
            near_duplicate_threshold: default_near(),
        }
    }
}

fn default_near() -> f64 {
    0.8
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            eval_fraction: default_eval_fraction(),
            seed: default_seed(),
        }
    }
}

fn default_eval_fraction() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    42
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SynthesisSpec {
    pub provider: Provider,
    #[serde(default)]
    pub endpoint: Option<String>,
    pub model: String,
    #[serde(default)]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    #[serde(default)]
    pub topics: Vec<SynthesisTopic>,
    #[serde(default = "default_tpm")]
    pub tokens_per_minute: u32,
    /// Examples asked for per request.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

fn default_tpm() -> u32 {
    30_000
}
fn default_batch() -> u32 {
    5
}
fn default_max_tokens() -> u32 {
    4096
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Anthropic,
    Ollama,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SynthesisTopic {
    pub name: String,
    pub count: u32,
    #[serde(default)]
    pub instructions: String,
}

impl DatasetResource {
    /// Reads a CR from YAML or JSON (JSON is YAML, so one parser does both).
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let res: DatasetResource = serde_yaml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        if !res.kind.is_empty() && res.kind != "Dataset" {
            return Err(SpecError::Invalid {
                path: path.into(),
                message: format!("kind is {}, expected Dataset", res.kind),
            });
        }
        res.spec.check().map_err(|message| SpecError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(res)
    }
}

impl DatasetSpec {
    /// Cross-field rules serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        for (i, s) in self.sources.iter().enumerate() {
            let n = s.path.is_some() as u8 + s.config_map.is_some() as u8 + s.url.is_some() as u8;
            if n != 1 {
                return Err(format!("sources[{i}] must have exactly one of path, configMap, url"));
            }
            if s.url.is_some() && s.sha256.as_deref().is_none_or(|h| h.len() != 64) {
                return Err(format!("sources[{i}]: a url source needs its sha256 (64 hex digits)"));
            }
        }
        if !(0.0..1.0).contains(&self.split.eval_fraction) {
            return Err(format!(
                "split.evalFraction {} must be in [0, 1)",
                self.split.eval_fraction
            ));
        }
        if self.filters.min_quality_score > 100 {
            return Err("filters.minQualityScore must be 0..=100".into());
        }
        let t = self.filters.dedup.near_duplicate_threshold;
        if !(0.0..=1.0).contains(&t) {
            return Err(format!("filters.dedup.nearDuplicateThreshold {t} must be in [0, 1]"));
        }
        if let Some(s) = &self.synthesis {
            if s.tokens_per_minute == 0 || s.batch_size == 0 {
                return Err("synthesis.tokensPerMinute and batchSize must be positive".into());
            }
        }
        Ok(())
    }

    /// The declared tools, or the seed's FireWeave tools when none are declared.
    pub fn effective_tools(&self) -> Vec<Value> {
        if self.tools.is_empty() {
            fireweave_tools()
        } else {
            self.tools.clone()
        }
    }
}

/// The seed's three FireWeave actions as OpenAI function definitions with real JSON schemas.
pub fn fireweave_tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {
            "name": "check_traffic_flow",
            "description": "Check if traffic is allowed between source and destination",
            "parameters": {"type": "object", "properties": {
                "source": {"type": "string", "description": "Source IP address, CIDR or object name"},
                "destination": {"type": "string", "description": "Destination IP address, CIDR or object name"},
                "port": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "Destination port"},
                "protocol": {"type": "string", "enum": ["tcp", "udp", "icmp", "any"]}
            }, "required": ["source", "destination", "port"], "additionalProperties": false}
        }}),
        json!({"type": "function", "function": {
            "name": "create_firewall_rule",
            "description": "Create a new firewall rule",
            "parameters": {"type": "object", "properties": {
                "source": {"type": "string"},
                "destination": {"type": "string"},
                "action": {"type": "string", "enum": ["allow", "deny", "drop"]},
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                "protocol": {"type": "string", "enum": ["tcp", "udp", "icmp", "any"]},
                "firewall": {"type": "string", "description": "Device or device group the rule is deployed to"},
                "description": {"type": "string"}
            }, "required": ["source", "destination", "action"], "additionalProperties": false}
        }}),
        json!({"type": "function", "function": {
            "name": "run_compliance_scan",
            "description": "Run compliance scan against a framework",
            "parameters": {"type": "object", "properties": {
                "framework": {"type": "string", "enum": ["PCI-DSS", "SOC2", "NIST", "HIPAA"]},
                "firewall": {"type": "string"}
            }, "required": ["framework", "firewall"], "additionalProperties": false}
        }}),
    ]
}
