//! Types shared by more than one resource: artifact references, quantization names, compute placement.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret whose value is used.
    pub key: String,
}

/// A file or folder on the artifact volume, identified by its content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// Location on the artifact volume, relative to its root (for example `datasets/default/fw/<digest>`).
    pub uri: String,
    /// `sha256:<hex>` of the content.
    pub digest: crate::contract::Digest,
}

/// GGUF quantization types the quantize step produces and the servers load.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum Quantization {
    /// Unquantized 16-bit floats (largest, reference quality).
    F16,
    /// Unquantized bfloat16.
    BF16,
    /// 8-bit blocks: best quality of the quantized types (~8 GB for an 8B model).
    #[serde(rename = "Q8_0")]
    Q8_0,
    /// 6-bit k-quant.
    #[serde(rename = "Q6_K")]
    Q6K,
    /// 5-bit k-quant mix: better quality (~5.5 GB for an 8B model).
    #[serde(rename = "Q5_K_M")]
    Q5KM,
    /// 4-bit k-quant mix: good quality, fastest (~4.5 GB for an 8B model). The default.
    #[serde(rename = "Q4_K_M")]
    Q4KM,
}

impl Quantization {
    /// Every supported name, in the spelling the CRDs accept.
    pub const ALL: [Quantization; 6] = [Self::F16, Self::BF16, Self::Q8_0, Self::Q6K, Self::Q5KM, Self::Q4KM];

    /// The name as written in specs, file names and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q6K => "Q6_K",
            Self::Q5KM => "Q5_K_M",
            Self::Q4KM => "Q4_K_M",
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a resource's files on the artifact volume when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ArtifactRetention {
    /// Keep the files (the default): deleting the resource never destroys a trained model.
    #[default]
    Retain,
    /// Delete the resource's folder on the artifact volume before the resource goes away.
    Delete,
}

/// Where and with how much a worker Pod runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// NVIDIA GPUs (`nvidia.com/gpu`) per Pod. Defaults to 1 for a TrainingRun and 0 for a ModelServing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Memory request and limit, as a Kubernetes quantity (for example `32Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU request, as a Kubernetes quantity (for example `4` or `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Node labels the Pod must match, for example `{"nvidia.com/gpu.product": "NVIDIA-L4"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for tainted nodes (GPU pools are usually tainted `nvidia.com/gpu:NoSchedule`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the Pod; a lower class lets training be preempted by serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// A schema for a list of free-form JSON objects (tool declarations): the API server keeps every field.
pub(crate) fn free_form_object_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}
