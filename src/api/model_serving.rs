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
    /// Serve only a GGUF whose TrainingRun passed its evaluation gate (the default): while a newer attempt
    /// is evaluated, or after it failed, the newest one that passed keeps serving. `false` serves the
    /// newest GGUF whatever its evaluation says; status shows it was not required.
    #[serde(default = "yes")]
    pub require_evaluation: bool,
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
    /// Strings that end a reply. Empty (the default): the model's chat format's own — for Llama 3 its header
    /// and end-of-turn tokens and the reserved special tokens (the seed's Modelfile), for ChatML
    /// `<|im_start|>` and `<|im_end|>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
            stop: Vec::new(),
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
    pub phase: Option<crate::api::conditions::Phase>,
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
    pub digest: crate::contract::Digest,
    /// Quantization type, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Where it came from: `trainingrun/<name>` or `gguf/<path>`.
    pub source: String,
    /// Path on the artifact volume.
    pub uri: String,
    /// The chat format the model was trained in, when its TrainingRun says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_format: Option<crate::chat::ChatFormat>,
    /// Its evaluation gate: `passed (attempt N)`, or `not required (...)` when the spec waived it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<String>,
}

/// Whether `spec.modelfile.template` may serve a model trained in `trained` (its chat format, when known):
/// unset, or — while evaluation is required — exactly that format's Modelfile template, the one proven to
/// render the trained prompts token for token. Anything else would serve prompts nobody checked: refused,
/// naming the field, unless `spec.model.requireEvaluation: false` waives the proof.
pub fn template_fits(spec: &ModelServingSpec, trained: Option<crate::chat::ChatFormat>) -> Result<(), String> {
    let (Some(template), Some(format)) = (&spec.modelfile.template, trained) else {
        return Ok(());
    };
    if !spec.model.require_evaluation || template == format.ollama_template() {
        return Ok(());
    }
    let what = match crate::chat::ChatFormat::of_ollama_template(template, "spec.modelfile.template") {
        Ok(other) if other != format => format!("a {other} template"),
        _ => "not the Modelfile template of that format".to_string(),
    };
    Err(format!(
        "spec.modelfile.template: the model was trained in the {format} chat format and this template is {what}, \
         so served prompts would not be the trained ones; unset it, or set spec.model.requireEvaluation: false \
         to serve it unchecked"
    ))
}

/// Why the newest GGUF of a TrainingRun is not the one served: its evaluation is pending or failed while an
/// earlier attempt's model serves. `None` when the newest is the served one (or evaluation is not required).
pub fn held_back(source: &ModelSource, run: Option<&super::TrainingRun>) -> Option<String> {
    let reference = source.training_run_ref.as_ref()?;
    let status = run?.status.as_ref()?;
    if !source.require_evaluation {
        return None;
    }
    let passed = status.passed.as_ref()?.attempt;
    (status.attempt > passed).then(|| match &status.evaluation {
        Some(e) if !e.passed => format!(
            "attempt {} of TrainingRun {} failed its evaluation ({}); attempt {passed}'s model keeps serving",
            status.attempt,
            reference.name,
            e.failures.join("; ")
        ),
        _ => format!(
            "attempt {} of TrainingRun {} is not evaluated yet; attempt {passed}'s model keeps serving",
            status.attempt, reference.name
        ),
    })
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

impl ModelSource {
    /// The GGUF this source names, or why there is none yet: a `gguf` file as written, or the newest GGUF of
    /// the referenced TrainingRun in the wanted quantization (the old model serves until a new one exists,
    /// even while the run retrains). The operator and `fireweave-ai run` both decide with this.
    pub fn resolve(&self, run: Option<&super::TrainingRun>) -> Result<ServedModel, String> {
        if let Some(file) = &self.gguf {
            let digest =
                crate::contract::Digest::parse(&file.sha256).map_err(|e| format!("spec.model.gguf.sha256: {e}"))?;
            return Ok(ServedModel {
                digest,
                quantization: None,
                source: format!("gguf/{}", file.path),
                uri: file.path.clone(),
                chat_format: None,
                evaluation: None,
            });
        }
        let Some(reference) = &self.training_run_ref else {
            return Err("spec.model sets neither trainingRunRef nor gguf".into());
        };
        let Some(run) = run else {
            return Err(format!("TrainingRun {} does not exist yet", reference.name));
        };
        let status = run.status.as_ref();
        let (files, chat_format, gate) = if self.require_evaluation {
            if !run.spec.evaluation.enabled {
                return Err(format!(
                    "TrainingRun {} is not evaluated (spec.evaluation.enabled: false); set \
                     spec.model.requireEvaluation: false to serve it anyway",
                    reference.name
                ));
            }
            match status.and_then(|s| s.passed.as_ref()) {
                Some(p) => (
                    p.gguf.as_slice(),
                    p.chat_format,
                    format!("passed (attempt {})", p.attempt),
                ),
                None => {
                    return Err(match status.and_then(|s| s.evaluation.as_ref()) {
                        Some(e) if !e.passed => format!(
                            "TrainingRun {} failed its evaluation gate ({}) and no earlier attempt passed",
                            reference.name,
                            e.failures.join("; ")
                        ),
                        _ => format!("TrainingRun {} has no evaluated GGUF yet", reference.name),
                    });
                }
            }
        } else {
            let artifacts = status.and_then(|s| s.artifacts.as_ref());
            (
                artifacts.map(|a| a.gguf.as_slice()).unwrap_or_default(),
                artifacts.and_then(|a| a.chat_format),
                "not required (spec.model.requireEvaluation: false)".to_string(),
            )
        };
        match files.iter().find(|g| g.quantization == reference.quantization) {
            Some(g) => Ok(ServedModel {
                digest: g.digest,
                quantization: Some(g.quantization),
                source: format!("trainingrun/{}", reference.name),
                uri: g.uri.clone(),
                chat_format,
                evaluation: Some(gate),
            }),
            None if files.is_empty() => Err(format!("TrainingRun {} has no GGUF yet", reference.name)),
            None => Err(format!(
                "TrainingRun {} produced no {} GGUF (it has {}); add it to its spec.export.gguf",
                reference.name,
                reference.quantization.as_str(),
                files
                    .iter()
                    .map(|g| g.quantization.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(status: serde_json::Value) -> super::super::TrainingRun {
        serde_json::from_value(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "fw"},
            "spec": {"baseModel": {"path": "m"}, "datasetRef": {"name": "d"}}, "status": status}))
        .unwrap()
    }

    fn gguf(tag: &str) -> serde_json::Value {
        json!([{"quantization": "Q4_K_M", "uri": format!("runs/default/fw/{tag}.gguf"),
                "digest": crate::contract::digest::fake(tag), "sizeBytes": 1}])
    }

    fn source(require: bool) -> ModelSource {
        serde_json::from_value(json!({"trainingRunRef": {"name": "fw"}, "requireEvaluation": require})).unwrap()
    }

    #[test]
    fn only_a_model_that_passed_is_served_unless_waived() {
        let failed_first = run(json!({"attempt": 1, "artifacts": {"gguf": gguf("a1")},
            "evaluation": {"passed": false, "failures": ["Q4_K_M eval loss is +0.9000 over the unquantized adapter (allowed 0.35)"]}}));
        let err = source(true).resolve(Some(&failed_first)).unwrap_err();
        assert!(
            err.contains("failed its evaluation gate (Q4_K_M eval loss is +0.9000"),
            "{err}"
        );
        let waived = source(false).resolve(Some(&failed_first)).unwrap();
        assert_eq!(waived.uri, "runs/default/fw/a1.gguf");
        assert_eq!(
            waived.evaluation.as_deref(),
            Some("not required (spec.model.requireEvaluation: false)")
        );

        // Attempt 3 failed after attempt 2 passed: attempt 2's model serves, and why is said.
        let later = run(json!({"attempt": 3, "artifacts": {"gguf": gguf("a3")},
            "evaluation": {"passed": false, "failures": ["the run diverged"]},
            "passed": {"attempt": 2, "gguf": gguf("a2"), "chatFormat": "chatml"}}));
        let served = source(true).resolve(Some(&later)).unwrap();
        assert_eq!(
            (served.uri.as_str(), served.chat_format),
            ("runs/default/fw/a2.gguf", Some(crate::chat::ChatFormat::Chatml))
        );
        assert_eq!(served.evaluation.as_deref(), Some("passed (attempt 2)"));
        let note = held_back(&source(true), Some(&later)).unwrap();
        assert_eq!(
            note,
            "attempt 3 of TrainingRun fw failed its evaluation (the run diverged); attempt 2's model keeps serving"
        );
        assert_eq!(held_back(&source(false), Some(&later)), None);
    }

    #[test]
    fn a_spec_template_must_be_the_trained_formats_own() {
        use crate::chat::ChatFormat;
        let mut spec: ModelServingSpec =
            serde_json::from_value(json!({"model": {"trainingRunRef": {"name": "fw"}}})).unwrap();
        assert_eq!(template_fits(&spec, Some(ChatFormat::Chatml)), Ok(()), "unset");
        spec.modelfile.template = Some(ChatFormat::Chatml.ollama_template().into());
        assert_eq!(template_fits(&spec, Some(ChatFormat::Chatml)), Ok(()), "the twin");
        let err = template_fits(&spec, Some(ChatFormat::Llama3)).unwrap_err();
        assert!(err.starts_with("spec.modelfile.template: the model was trained in the llama3 chat format and this template is a chatml template"), "{err}");
        spec.modelfile.template = Some("{{ .Prompt }}".into());
        assert!(
            template_fits(&spec, Some(ChatFormat::Chatml))
                .unwrap_err()
                .contains("not the Modelfile template")
        );
        assert_eq!(
            template_fits(&spec, None),
            Ok(()),
            "a GGUF of unknown format is the template's to describe"
        );
        spec.model.require_evaluation = false;
        assert_eq!(template_fits(&spec, Some(ChatFormat::Chatml)), Ok(()), "waived");
    }
}
