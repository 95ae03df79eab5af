//! `Dataset`: training conversations validated, scored, deduplicated and split into a content-addressed artifact.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ArtifactRef, ArtifactRetention, SecretKeyRef, free_form_object_list};

/// Builds a training dataset for a TrainingRun: loads the sources, optionally synthesizes more conversations
/// through an LLM API, scores and filters them, removes duplicates and splits train/eval.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ai.fireweave.io",
    version = "v1alpha1",
    kind = "Dataset",
    doc = "Training conversations for the assistant: validated, scored, deduplicated and split into a content-addressed artifact that TrainingRuns read.",
    namespaced,
    status = "DatasetStatus",
    shortname = "fwds",
    category = "fireweave",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Kept","type":"integer","description":"Examples kept after filtering","jsonPath":".status.stats.kept"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","priority":1,"jsonPath":".status.artifact.digest"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("size(self.sources) > 0 || has(self.synthesis)").message("a Dataset needs at least one entry in spec.sources or a spec.synthesis section"))]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Where the conversations come from. Each entry sets exactly one of `path`, `configMap` or `url`.
    #[serde(default)]
    pub sources: Vec<DatasetSource>,
    /// Generates additional conversations through an LLM API, topic by topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<Synthesis>,
    /// Which examples are kept.
    #[serde(default)]
    pub filters: Filters,
    /// How the kept examples are divided into train and eval sets.
    #[serde(default)]
    pub split: Split,
    /// Tools the assistant may call, as OpenAI function declarations; attached to every example. Defaults to
    /// FireWeave's `check_traffic_flow`, `create_firewall_rule` and `run_compliance_scan`.
    #[serde(default = "default_tools")]
    #[schemars(schema_with = "free_form_object_list")]
    pub tools: Vec<serde_json::Value>,
    /// Also write `train.openai.jsonl` and `eval.openai.jsonl` (OpenAI `messages` records) beside the ShareGPT files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub openai_output: bool,
    /// `Retain` (default) keeps the dataset's files when this resource is deleted; `Delete` removes them.
    #[serde(default)]
    pub artifact_retention: ArtifactRetention,
}

/// One input of the dataset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.path) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1").message("a source sets exactly one of path, configMap or url"))]
#[x_kube(validation = Rule::new("!has(self.url) || has(self.sha256)").message("a url source needs sha256, the checksum of the file it downloads"))]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// A .json/.jsonl file or a folder of them, relative to the artifact volume's root (or to the manifest
    /// when run locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A ConfigMap in this namespace holding the examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// An HTTPS URL to download; requires `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Hex sha256 of the file behind `url`; the download is rejected when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Layout of the records: `auto` (detect), `qa` (question/answer), `sharegpt` or `openai` (messages).
    #[serde(default)]
    pub format: SourceFormat,
    /// Topic assigned to records that do not name one (used for per-topic statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// Examples stored in a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap.
    pub name: String,
    /// Key to read; every key when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Record layout of a source.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    #[default]
    Auto,
    Qa,
    Sharegpt,
    Openai,
}

/// Synthetic data generation through an LLM API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Synthesis {
    /// API flavour: `openai`, `anthropic` or `ollama`.
    pub provider: SynthesisProvider,
    /// Base URL of the API; the provider's public endpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Model that writes the examples, for example `gpt-4o`.
    pub model: String,
    /// Secret key holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Topics to generate and how many examples each.
    #[serde(default)]
    pub topics: Vec<SynthesisTopic>,
    /// Rate limit the generator keeps to (tokens per minute, prompt and completion together).
    #[serde(default = "default_tokens_per_minute")]
    #[x_kube(validation = Rule::new("self > 0").message("tokensPerMinute must be positive"))]
    pub tokens_per_minute: u32,
    /// Examples asked for in one request.
    #[serde(default = "default_batch_size")]
    #[x_kube(validation = Rule::new("self > 0").message("batchSize must be positive"))]
    pub batch_size: u32,
    /// Completion token limit of one request.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

/// LLM API flavours for synthesis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SynthesisProvider {
    Openai,
    Anthropic,
    Ollama,
}

/// One synthesis topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynthesisTopic {
    /// Topic name, for example `fireweave-function-calling`.
    pub name: String,
    /// Examples to generate.
    pub count: u32,
    /// Extra guidance for the generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// Which examples survive.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Minimum quality score (0-100: answer length, code blocks, technical depth, formatting).
    #[serde(default = "default_min_quality_score")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("minQualityScore is a score from 0 to 100"))]
    pub min_quality_score: u32,
    /// Answers shorter than this many characters are rejected.
    #[serde(default = "default_min_answer_chars")]
    pub min_answer_chars: u32,
    /// Reject answers containing placeholder text such as `TODO` or `[insert ...]`.
    #[serde(default = "yes")]
    pub reject_placeholders: bool,
    /// Duplicate removal.
    #[serde(default)]
    pub dedup: Dedup,
    /// Records larger than this many bytes of JSON are rejected without being parsed, so one runaway line
    /// cannot exhaust the worker's memory.
    #[serde(default = "default_max_record_bytes")]
    #[x_kube(validation = Rule::new("self > 0").message("maxRecordBytes must be positive"))]
    pub max_record_bytes: u64,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            min_quality_score: default_min_quality_score(),
            min_answer_chars: default_min_answer_chars(),
            reject_placeholders: true,
            dedup: Dedup::default(),
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

/// Duplicate removal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dedup {
    /// Drop examples whose normalized text is identical.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Drop examples whose estimated similarity (Jaccard of word shingles, MinHash) to a better-scoring one is
    /// at least this (0-1). `1.0` still catches copies that differ only in whitespace or punctuation; `0`
    /// turns near-duplicate detection off.
    #[serde(default = "default_near_duplicate_threshold")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("nearDuplicateThreshold is a similarity in [0, 1] (0 turns it off)"))]
    pub near_duplicate_threshold: f64,
}

impl Default for Dedup {
    fn default() -> Self {
        Self {
            exact: true,
            near_duplicate_threshold: default_near_duplicate_threshold(),
        }
    }
}

/// Train/eval split.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    /// Fraction of kept examples held out for evaluation.
    #[serde(default = "default_eval_fraction")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 1.0").message("evalFraction is a fraction in [0, 1)"))]
    pub eval_fraction: f64,
    /// Seed of the shuffle, so the same input gives the same split.
    #[serde(default = "default_split_seed")]
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Self {
            eval_fraction: default_eval_fraction(),
            seed: default_split_seed(),
        }
    }
}

/// Where a Dataset stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::api::conditions::Phase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Job that builds the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The built dataset: folder with train.jsonl, eval.jsonl, stats.json and rejected.jsonl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRef>,
    /// Counts from the last successful build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<DatasetStats>,
}

/// Counts from a dataset build.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStats {
    /// Records read.
    #[serde(default)]
    pub input: u64,
    /// Records that parsed into a conversation.
    #[serde(default)]
    pub valid: u64,
    /// Records rejected by validation or filters.
    #[serde(default)]
    pub rejected: u64,
    /// Records dropped as duplicates.
    #[serde(default)]
    pub duplicates: u64,
    /// Records kept.
    #[serde(default)]
    pub kept: u64,
    /// Kept records in train.jsonl.
    #[serde(default)]
    pub train: u64,
    /// Kept records in eval.jsonl.
    #[serde(default)]
    pub eval: u64,
    /// Quality scores in buckets of ten (`"50-59"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score_histogram: Vec<ScoreBucket>,
    /// Pass rate per topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicStats>,
}

/// One histogram bucket of quality scores.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ScoreBucket {
    /// Score range, for example `50-59`.
    pub bucket: String,
    /// Examples in the range.
    pub count: u64,
}

/// Quality pass rate of one topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TopicStats {
    /// Topic name.
    pub name: String,
    /// Examples that passed the filters.
    pub passed: u64,
    /// Examples seen.
    pub total: u64,
}

fn yes() -> bool {
    true
}
fn default_min_quality_score() -> u32 {
    50
}
fn default_near_duplicate_threshold() -> f64 {
    0.8
}
fn default_eval_fraction() -> f64 {
    0.1
}
fn default_split_seed() -> u64 {
    42
}
fn default_tokens_per_minute() -> u32 {
    30_000
}
fn default_batch_size() -> u32 {
    5
}
fn default_max_tokens() -> u32 {
    4096
}
fn default_min_answer_chars() -> u32 {
    40
}
fn default_max_record_bytes() -> u64 {
    1 << 20
}

/// FireWeave's three actions the seed project trains the model to call, as OpenAI function declarations with
/// JSON schemas strict enough to reject a call with a wrong or missing argument.
pub fn default_tools() -> Vec<serde_json::Value> {
    let port =
        serde_json::json!({"type": "integer", "minimum": 0, "maximum": 65535, "description": "Destination port"});
    let protocol = serde_json::json!({"type": "string", "enum": ["tcp", "udp", "icmp", "any"]});
    vec![
        serde_json::json!({"type": "function", "function": {
            "name": "check_traffic_flow",
            "description": "Check if traffic is allowed between source and destination",
            "parameters": {"type": "object", "properties": {
                "source": {"type": "string", "description": "Source IP address, CIDR or object name"},
                "destination": {"type": "string", "description": "Destination IP address, CIDR or object name"},
                "port": port,
                "protocol": protocol
            }, "required": ["source", "destination", "port"], "additionalProperties": false}
        }}),
        serde_json::json!({"type": "function", "function": {
            "name": "create_firewall_rule",
            "description": "Create a new firewall rule",
            "parameters": {"type": "object", "properties": {
                "source": {"type": "string"},
                "destination": {"type": "string"},
                "action": {"type": "string", "enum": ["allow", "deny", "drop"]},
                "port": port,
                "protocol": protocol,
                "firewall": {"type": "string", "description": "Device or device group the rule is deployed to"},
                "description": {"type": "string"}
            }, "required": ["source", "destination", "action"], "additionalProperties": false}
        }}),
        serde_json::json!({"type": "function", "function": {
            "name": "run_compliance_scan",
            "description": "Run compliance scan against a framework",
            "parameters": {"type": "object", "properties": {
                "framework": {"type": "string", "enum": ["PCI-DSS", "SOC2", "NIST", "HIPAA"]},
                "firewall": {"type": "string"}
            }, "required": ["framework", "firewall"], "additionalProperties": false}
        }}),
    ]
}

impl DatasetSpec {
    /// What the CRD's schema and CEL rules leave unchecked; the document loader runs it after them.
    pub fn semantic_errors(&self) -> Vec<super::validate::FieldError> {
        let mut errors = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            if s.url.is_some()
                && let Some(sum) = &s.sha256
                && crate::contract::Digest::parse(sum).is_err()
            {
                errors.push(super::validate::FieldError {
                    field: format!("spec.sources[{i}].sha256"),
                    message: format!("{sum:?} is not a sha256 (64 hex digits)"),
                });
            }
        }
        errors
    }
}
