//! Desired objects of a Dataset: the spec ConfigMap and the Job running `fireweave-ai dataset`. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec,
    SecretKeySelector, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::api::Dataset;
use crate::controller::config::Settings;
use crate::controller::security::{container_security_context, pod_security_context};
use crate::controller::workload::{
    ARTIFACTS_DIR, SPEC_DIR, WORKER_METRICS_PORT, artifacts_volume, child_meta, empty_dir, env, labels, mount,
    short_hash, spec_config_map, spec_volume,
};

/// Label/component of dataset Jobs.
pub const COMPONENT: &str = "dataset";
/// Where ConfigMap sources are mounted, one folder per ConfigMap (`$FIREWEAVE_CONFIGMAP_DIR/<name>/<key>`).
pub const CONFIGMAP_SOURCES_DIR: &str = "/etc/fireweave-sources";

/// The Job (and its ConfigMap) name for the current spec: a spec change gets a new Job, because a Job's Pod
/// template cannot change and a finished build must stay readable.
pub fn job_name(ds: &Dataset) -> String {
    format!("{}-{}", ds.name_any(), short_hash(&ds.spec))
}

/// The ConfigMap with `spec.json`.
pub fn config_map(ds: &Dataset) -> ConfigMap {
    let doc = crate::contract::document::render(ds, &ds.spec, &BTreeMap::new());
    spec_config_map(child_meta(ds, &job_name(ds), COMPONENT), &doc)
}

/// The Job that builds the dataset.
pub fn job(ds: &Dataset, settings: &Settings) -> Job {
    let name = job_name(ds);
    let config_maps: Vec<&str> = ds
        .spec
        .sources
        .iter()
        .filter_map(|s| s.config_map.as_ref().map(|c| c.name.as_str()))
        .collect();

    let mut volumes = vec![
        spec_volume(&name),
        artifacts_volume(&settings.artifact_pvc, false),
        empty_dir("tmp", false),
    ];
    let mut mounts = vec![
        mount("spec", SPEC_DIR, true),
        mount("artifacts", ARTIFACTS_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    for (i, cm) in config_maps.iter().enumerate() {
        let volume = format!("source-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&volume, &format!("{CONFIGMAP_SOURCES_DIR}/{cm}"), true));
    }

    let mut envs = vec![
        env("FIREWEAVE_LOG_JSON", "true"),
        env("FIREWEAVE_CONFIGMAP_DIR", CONFIGMAP_SOURCES_DIR),
    ];
    if let Some(secret) = ds.spec.synthesis.as_ref().and_then(|s| s.api_key_secret_ref.as_ref()) {
        envs.push(EnvVar {
            name: "FIREWEAVE_SYNTHESIS_API_KEY".into(),
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

    let container = Container {
        name: "dataset".into(),
        image: Some(settings.worker_image.clone()),
        args: Some(
            [
                "dataset",
                "--spec",
                &format!("{SPEC_DIR}/spec.json"),
                "--artifacts",
                ARTIFACTS_DIR,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(envs),
        ports: Some(vec![metrics_port()]),
        volume_mounts: Some(mounts),
        security_context: Some(container_security_context()),
        // The worker writes its JSON result there; the logs' tail is the fallback when it crashed first.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };

    Job {
        metadata: child_meta(ds, &name, COMPONENT),
        spec: Some(JobSpec {
            // Data preparation is deterministic: a third failure will not be different from the first two.
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(ds, COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    // Workers never talk to the API server.
                    automount_service_account_token: Some(false),
                    service_account_name: settings.worker_service_account.clone(),
                    security_context: Some(pod_security_context()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn metrics_port() -> ContainerPort {
    ContainerPort {
        name: Some("metrics".into()),
        container_port: WORKER_METRICS_PORT,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}
