//! Pieces every desired object shares: labels, owner references, volumes, the spec ConfigMap, resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::ComputeResources;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "fireweave-ai-operator";
/// Where the artifact volume is mounted in every worker.
pub const ARTIFACTS_DIR: &str = crate::contract::layout::ARTIFACTS_MOUNT;
/// Where a worker finds `spec.json`.
pub const SPEC_DIR: &str = crate::contract::document::SPEC_MOUNT;
/// Port of a worker's Prometheus metrics (`--metrics-addr` default).
pub const WORKER_METRICS_PORT: i32 = 9090;

/// Labels on every child of `owner`; `component` says which kind of work it is.
pub fn labels<K: Resource>(owner: &K, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "fireweave-ai".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            owner.meta().name.clone().unwrap_or_default(),
        ),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string()),
    ])
}

/// Metadata of a child: its name, the owner's namespace, labels, and a controller owner reference so that
/// deleting the owner deletes the child and the child's changes requeue the owner.
pub fn child_meta<K: Resource<DynamicType = ()>>(owner: &K, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: owner.meta().namespace.clone(),
        labels: Some(labels(owner, component)),
        owner_references: owner_reference(owner).map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// A ConfigMap holding `spec.json`.
pub fn spec_config_map(meta: ObjectMeta, document: &serde_json::Value) -> ConfigMap {
    // Pretty JSON: people read it with `kubectl get cm -o yaml` when a worker misbehaves.
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([("spec.json".to_string(), text)])),
        ..Default::default()
    }
}

/// First 10 hex digits of the sha256 of `value`'s JSON: short, stable names for spec-derived children.
pub fn short_hash<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))[..10].to_string()
}

pub fn spec_volume(config_map: &str) -> Volume {
    Volume {
        name: "spec".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn artifacts_volume(claim: &str, read_only: bool) -> Volume {
    Volume {
        name: "artifacts".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_string(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    }
}

/// A scratch directory; with a read-only root file system every writable path must be a volume.
pub fn empty_dir(name: &str, memory: bool) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// Requests and limits from a spec's resources; GPUs are limits only (the device plugin's rule).
pub fn resource_requirements(r: &ComputeResources, gpus: u32) -> ResourceRequirements {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(cpu) = &r.cpu {
        requests.insert("cpu".to_string(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &r.memory {
        // Equal request and limit: a trainer that outgrows its memory should fail, not be OOM-killed at random.
        requests.insert("memory".to_string(), Quantity(memory.clone()));
        limits.insert("memory".to_string(), Quantity(memory.clone()));
    }
    if gpus > 0 {
        limits.insert("nvidia.com/gpu".to_string(), Quantity(gpus.to_string()));
    }
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}
