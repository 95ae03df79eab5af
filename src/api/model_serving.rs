//! `ModelServing`: an Ollama-API inference Deployment for a GGUF model.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ComputeResources, Quantization};

/// Serves a GGUF model on the Ollama REST API (`/api/chat`, `/api/generate`, ...) behind a Service, either with
/// the official Ollama image or with the built-in llama.cpp server (`fireweave-ai serve`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ai.fireweave.io",
    version = "v1alpha1",
    kind = "ModelServing",
    doc = "An Ollama-API inference Deployment and Service for a GGUF model (a TrainingRun output or a file on the artifact volume).",
    namespaced,
    status = "ModelServingStatus",
    shortname = "fwms",
    category = "fireweave",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.modelName"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelServingSpec {
    /// The GGUF to serve. Set exactly one of `trainingRunRef` or `gguf`.
    pub model: ModelSource,
    /// Name clients pass as `model` in API requests.
    #[serde(default = "default_model_name")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9._-]*(:[a-zA-Z0-9._-]+)?$')").message("modelName must be a lower-case Ollama model name such as network-security-expert or name:tag"))]
    pub model_name: String,
    /// `ollama` (default): the official Ollama image; `builtin`: `fireweave-ai serve`, which adds /metrics and
    /// bounded queueing.
    #[serde(default)]
    pub engine: Engine,
    /// Prompt template, system prompt and sampling parameters (the Ollama Modelfile).
    #[serde(default)]
    pub modelfile: Modelfile,
    /// Pods serving the model.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas cannot be negative"))]
    pub replicas: i32,
    /// Size and placement of each serving Pod.
    #[serde(default)]
    pub resources: ComputeResources,
    /// How a new model version is rolled out.
    #[serde(default)]
    pub rollout: Rollout,
    /// Pods allowed to call the API. When set, a NetworkPolicy admits only these peers; when empty, any Pod can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<ClientSelector>,
    /// Service and container port of the API.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("port must be between 1 and 65535"))]
    pub port: i32,
}

/// Which GGUF file is served.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.trainingRunRef) != has(self.gguf)").message("model sets exactly one of trainingRunRef or gguf"))]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    /// A GGUF produced by a TrainingRun in this namespace; the serving waits until the run has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_run_ref: Option<TrainingRunRef>,
    /// A GGUF file already on the artifact volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<GgufFile>,
}

/// A TrainingRun's GGUF output.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TrainingRunRef {
    /// Name of the TrainingRun.
    pub name: String,
    /// Which of its GGUF files.
    #[serde(default = "default_quantization")]
    #[x_kube(validation = Rule::new("self in ['F16', 'BF16', 'Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M']").message("quantization must be one of F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M"))]
    pub quantization: Quantization,
}

/// A GGUF file on the artifact volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GgufFile {
    /// Path relative to the artifact volume root.
    pub path: String,
    /// Hex sha256 of the file; the server refuses a file that does not match.
    #[x_kube(validation = Rule::new("self.matches('^(sha256:)?[0-9a-f]{64}$')").message("sha256 must be 64 lower-case hex digits, optionally prefixed sha256:"))]
    pub sha256: String,
}

/// Inference engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Ollama,
    Builtin,
}

/// The Ollama Modelfile parts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Modelfile {
    /// System prompt. Defaults to the FireWeave network-security expert prompt.
    #[serde(default = "default_system")]
    pub system: String,
    /// Ollama (Go text/template) prompt template, for `engine: ollama`; defaults to the Llama 3.1 chat template
    /// with tool calling. The built-in server ignores it and renders the GGUF's own Jinja chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Sampling parameters.
    #[serde(default)]
    pub parameters: ModelParameters,
}

impl Default for Modelfile {
    fn default() -> Self {
        Self {
            system: default_system(),
            template: None,
            parameters: ModelParameters::default(),
        }
    }
}

/// Sampling parameters, named as in an Ollama Modelfile.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelParameters {
    /// Sampling temperature.
    #[serde(default = "default_temperature")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("temperature cannot be negative"))]
    pub temperature: f64,
    /// Nucleus sampling mass.
    #[serde(default = "default_top_p")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("top_p is in (0, 1]"))]
    pub top_p: f64,
    /// Sample among the k most likely tokens.
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// Penalty on repeated tokens.
    #[serde(default = "default_repeat_penalty")]
    pub repeat_penalty: f64,
    /// Context window in tokens.
    #[serde(default = "default_num_ctx")]
    #[x_kube(validation = Rule::new("self > 0").message("num_ctx must be positive"))]
    pub num_ctx: u32,
    /// Strings that end a reply. Defaults to the Llama 3 header and end-of-turn tokens.
    #[serde(default = "default_stop")]
    pub stop: Vec<String>,
}

impl Default for ModelParameters {
    fn default() -> Self {
        Self {
            temperature: default_temperature(),
            top_p: default_top_p(),
            top_k: default_top_k(),
            repeat_penalty: default_repeat_penalty(),
            num_ctx: default_num_ctx(),
            stop: default_stop(),
        }
    }
}

/// Rollout of a new model version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Extra Pods started during a rollout; old Pods keep serving until new ones are Ready (none is ever
    /// taken down first).
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = Rule::new("self > 0").message("rollout.maxSurge must be at least 1: old replicas stay up until new ones are Ready"))]
    pub max_surge: i32,
    /// Prompt a new Pod must answer before it counts as Ready.
    #[serde(default = "default_smoke_prompt")]
    pub smoke_prompt: String,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            smoke_prompt: default_smoke_prompt(),
        }
    }
}

/// Peers allowed to reach the API (a NetworkPolicy `from` entry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSelector {
    /// Pods with these labels (in this namespace, or in the namespaces selected below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Where a ModelServing stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelServingStatus {
    /// `Pending`, `RollingOut`, `Serving` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// In-cluster base URL of the Ollama API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The model every Ready replica serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<ServedModel>,
    /// Replicas that answer.
    #[serde(default)]
    pub ready_replicas: i32,
}

/// A served GGUF.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServedModel {
    /// `sha256:<hex>` of the GGUF file.
    pub digest: String,
    /// Quantization type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Where it came from: `trainingrun/<name>` or `gguf/<path>`.
    pub source: String,
    /// Path on the artifact volume.
    pub uri: String,
}

fn default_model_name() -> String {
    "network-security-expert".to_string()
}
fn default_quantization() -> Quantization {
    Quantization::Q4KM
}
fn default_replicas() -> i32 {
    1
}
fn default_port() -> i32 {
    11434
}
fn default_temperature() -> f64 {
    0.7
}
fn default_top_p() -> f64 {
    0.9
}
fn default_top_k() -> u32 {
    40
}
fn default_repeat_penalty() -> f64 {
    1.1
}
fn default_num_ctx() -> u32 {
    4096
}
fn default_max_surge() -> i32 {
    1
}
fn default_smoke_prompt() -> String {
    "Reply with the single word OK.".to_string()
}
/// The seed Modelfile's stop strings: Llama 3 headers, end of turn, and the reserved special tokens.
pub fn default_stop() -> Vec<String> {
    [
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|reserved_special_token",
    ]
    .map(String::from)
    .to_vec()
}
/// The seed Modelfile's system prompt.
pub fn default_system() -> String {
    "You are a Network Security Expert with deep expertise in:\n\
     - Firewall & Network Devices: Cisco, Palo Alto, Fortinet\n\
     - Cloud Security: AWS, Azure, GCP\n\
     - Threat Detection: IDS/IPS, SIEM, Incident Response\n\
     - FireWeave platform features and API\n\n\
     Provide accurate, detailed technical guidance with specific commands and configurations."
        .to_string()
}
