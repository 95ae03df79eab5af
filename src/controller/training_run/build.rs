//! Desired objects of a TrainingRun attempt: the spec ConfigMap and the GPU Job (train, then quantize). Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::{ArtifactRef, TrainingRun, TrainingRunSpec};
use crate::contract::Digest;
use crate::contract::annotations;
use crate::contract::document::render;
use crate::controller::config::Settings;
use crate::controller::dataset::build::metrics_port;
use crate::controller::security::{container_security_context, pod_security_context};
use crate::controller::workload::{
    ARTIFACTS_DIR, SPEC_DIR, artifacts_volume, child_meta, empty_dir, env, labels, mount, resource_requirements,
    spec_config_map, spec_volume,
};

pub const COMPONENT: &str = "training";
/// Preempted or evicted Pods do not count; this bounds real failures (a crash, OOM) per attempt.
pub const BACKOFF_LIMIT: i32 = 3;

/// Fingerprint of what the attempt produces: equal fingerprints, same model and files.
pub fn inputs_digest(spec: &TrainingRunSpec, dataset: &ArtifactRef) -> Digest {
    crate::contract::fingerprint::produced(spec, &dataset.digest)
}

/// Job and ConfigMap name of attempt `attempt`.
pub fn job_name(tr: &TrainingRun, attempt: u32) -> String {
    format!("{}-attempt-{attempt}", tr.name_any())
}

fn worker_annotations(dataset: &ArtifactRef) -> BTreeMap<String, String> {
    BTreeMap::from([
        (annotations::DATASET_URI.to_string(), dataset.uri.clone()),
        (annotations::DATASET_DIGEST.to_string(), dataset.digest.to_string()),
    ])
}

/// The ConfigMap with `spec.json`, annotated with the dataset build this attempt uses.
pub fn config_map(tr: &TrainingRun, attempt: u32, dataset: &ArtifactRef) -> ConfigMap {
    let doc = render(tr, &tr.spec, &worker_annotations(dataset));
    spec_config_map(child_meta(tr, &job_name(tr, attempt), COMPONENT), &doc)
}

/// The Job of one attempt: `train` on the GPU, then `quantize` and `evaluate` without one.
pub fn job(tr: &TrainingRun, attempt: u32, dataset: &ArtifactRef, settings: &Settings) -> Job {
    let name = job_name(tr, attempt);
    let r = &tr.spec.resources;
    let gpus = r.gpus.unwrap_or(1);
    let args = |step: &str| {
        [
            step,
            "--spec",
            &format!("{SPEC_DIR}/spec.json"),
            "--artifacts",
            ARTIFACTS_DIR,
        ]
        .map(String::from)
        .to_vec()
    };
    let mounts = vec![
        mount("spec", SPEC_DIR, true),
        mount("artifacts", ARTIFACTS_DIR, false),
        mount("tmp", "/tmp", false),
        mount("dshm", "/dev/shm", false),
    ];
    let mut envs = vec![
        env("FIREWEAVE_LOG_JSON", "true"),
        env("FIREWEAVE_DATASET_URI", &dataset.uri),
        env("FIREWEAVE_DATASET_DIGEST", &dataset.digest.to_string()),
    ];
    if let Some(secret) = tr
        .spec
        .base_model
        .hugging_face
        .as_ref()
        .and_then(|h| h.token_secret_ref.as_ref())
    {
        envs.push(EnvVar {
            name: "HF_TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let train = Container {
        name: "train".into(),
        image: Some(settings.trainer_image.clone()),
        args: Some(args("train")),
        env: Some(envs.clone()),
        ports: Some(vec![metrics_port()]),
        resources: Some(resource_requirements(r, gpus)),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let step = |name: &str| Container {
        name: name.into(),
        image: Some(settings.trainer_image.clone()),
        args: Some(args(name)),
        env: Some(envs.clone()),
        resources: Some(resource_requirements(r, 0)),
        volume_mounts: Some(mounts.clone()),
        security_context: Some(container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    // Init containers run one after another and the main container after them all: train, quantize, then
    // evaluate (or train, then quantize, without an evaluation).
    let (init, main) = if tr.spec.evaluation.enabled {
        (vec![train, step("quantize")], step("evaluate"))
    } else {
        (vec![train], step("quantize"))
    };
    Job {
        metadata: child_meta(tr, &name, COMPONENT),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            // A preempted or drained Pod is replaced without using up the backoff; the trainer resumes from
            // its last checkpoint on the artifact volume.
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    on_exit_codes: None,
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(tr, COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    service_account_name: settings.worker_service_account.clone(),
                    security_context: Some(pod_security_context()),
                    node_selector: (!r.node_selector.is_empty()).then(|| r.node_selector.clone()),
                    tolerations: (!r.tolerations.is_empty()).then(|| r.tolerations.clone()),
                    priority_class_name: r.priority_class_name.clone(),
                    init_containers: Some(init),
                    containers: vec![main],
                    volumes: Some(vec![
                        spec_volume(&name),
                        artifacts_volume(&settings.artifact_pvc, false),
                        empty_dir("tmp", false),
                        // PyTorch data loaders share tensors through /dev/shm; the runtime default is 64 MiB.
                        empty_dir("dshm", true),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}
