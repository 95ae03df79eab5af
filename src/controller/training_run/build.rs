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
use serde::Serialize;

use crate::api::{ArtifactRef, TrainingRun, TrainingRunSpec};
use crate::controller::config::Settings;
use crate::controller::dataset::build::metrics_port;
use crate::controller::security::{container_security_context, pod_security_context};
use crate::controller::workload::{
    ARTIFACTS_DIR, SPEC_DIR, artifacts_volume, child_meta, digest_of, empty_dir, env, labels, mount,
    resource_requirements, spec_config_map, spec_document, spec_volume,
};

pub const COMPONENT: &str = "training";
/// Annotations in spec.json telling the trainer which dataset build to read.
pub const DATASET_URI_ANNOTATION: &str = "ai.fireweave.io/dataset-uri";
pub const DATASET_DIGEST_ANNOTATION: &str = "ai.fireweave.io/dataset-digest";
/// Preempted or evicted Pods do not count; this bounds real failures (a crash, OOM) per attempt.
pub const BACKOFF_LIMIT: i32 = 3;

/// The inputs whose change means the model must be trained again. Placement (`resources`) and retention
/// are left out: moving a run to another node pool is not a reason to throw away its training.
#[derive(Serialize)]
struct TrainingInputs<'a> {
    #[serde(rename = "baseModel")]
    base_model: &'a crate::api::training_run::BaseModel,
    lora: &'a crate::api::training_run::LoraSpec,
    #[serde(rename = "baseQuantization")]
    base_quantization: crate::api::training_run::BaseQuantization,
    hyperparameters: &'a crate::api::training_run::Hyperparameters,
    #[serde(rename = "checkpointEverySteps")]
    checkpoint_every_steps: u32,
    export: &'a crate::api::training_run::Export,
    dataset: &'a str,
}

/// Fingerprint of what the attempt trains: equal fingerprints, same model.
pub fn inputs_digest(spec: &TrainingRunSpec, dataset: &ArtifactRef) -> String {
    digest_of(&TrainingInputs {
        base_model: &spec.base_model,
        lora: &spec.lora,
        base_quantization: spec.base_quantization,
        hyperparameters: &spec.hyperparameters,
        checkpoint_every_steps: spec.checkpoint_every_steps,
        export: &spec.export,
        dataset: &dataset.digest,
    })
}

/// Job and ConfigMap name of attempt `attempt`.
pub fn job_name(tr: &TrainingRun, attempt: u32) -> String {
    format!("{}-attempt-{attempt}", tr.name_any())
}

fn annotations(dataset: &ArtifactRef) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DATASET_URI_ANNOTATION.to_string(), dataset.uri.clone()),
        (DATASET_DIGEST_ANNOTATION.to_string(), dataset.digest.clone()),
    ])
}

/// The ConfigMap with `spec.json`, annotated with the dataset build this attempt uses.
pub fn config_map(tr: &TrainingRun, attempt: u32, dataset: &ArtifactRef) -> ConfigMap {
    let doc = spec_document(tr, &tr.spec, &annotations(dataset));
    spec_config_map(child_meta(tr, &job_name(tr, attempt), COMPONENT), &doc)
}

/// The Job of one attempt: `train` as an init container on the GPU, then `quantize` without one.
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
        env("FIREWEAVE_DATASET_DIGEST", &dataset.digest),
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
    let quantize = Container {
        name: "quantize".into(),
        image: Some(settings.trainer_image.clone()),
        args: Some(args("quantize")),
        env: Some(envs),
        resources: Some(resource_requirements(r, 0)),
        volume_mounts: Some(mounts),
        security_context: Some(container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
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
                    init_containers: Some(vec![train]),
                    containers: vec![quantize],
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
