//! Desired objects of a ModelServing: Deployment, Service, Modelfile/spec ConfigMap and NetworkPolicy. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, ExecAction, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::modelfile;
use crate::api::model_serving::{Engine, GgufFile, ModelSource};
use crate::api::{ModelServing, ServedModel};
use crate::controller::config::Settings;
use crate::controller::security::{container_security_context, pod_security_context};
use crate::controller::workload::{
    ARTIFACTS_DIR, SPEC_DIR, artifacts_volume, child_meta, empty_dir, env, labels, mount, resource_requirements,
    short_hash,
};

pub const COMPONENT: &str = "serving";
/// Pod-template annotation carrying the GGUF digest: a new digest is a new ReplicaSet, i.e. a rollout.
pub const MODEL_DIGEST_ANNOTATION: &str = "ai.fireweave.io/model-digest";
/// Pod-template annotation carrying the hash of the engine configuration (Modelfile or spec.json).
pub const CONFIG_HASH_ANNOTATION: &str = "ai.fireweave.io/config-hash";
/// Where Ollama keeps registered models (an emptyDir: the blob is copied from the artifact volume at start).
const OLLAMA_MODELS_DIR: &str = "/var/lib/ollama";

/// Starts Ollama, verifies and registers the GGUF from the artifact volume, then makes the model answer the
/// smoke prompt once before the Pod may turn Ready. Nothing is downloaded or installed.
const OLLAMA_START: &str = r#"set -eu
echo "$FIREWEAVE_MODEL_SHA256  $FIREWEAVE_MODEL_PATH" | sha256sum -c -
ollama serve &
server=$!
trap 'kill -TERM "$server"; wait "$server"' TERM INT
until ollama list >/dev/null 2>&1; do sleep 1; done
ollama create "$FIREWEAVE_MODEL_NAME" -f /etc/fireweave/Modelfile
ollama run "$FIREWEAVE_MODEL_NAME" "$FIREWEAVE_SMOKE_PROMPT" >/dev/null
touch /tmp/fireweave-ready
wait "$server"
"#;

/// Ready only after the smoke prompt was answered and while the model stays loaded in memory.
const OLLAMA_READY: &str = r#"test -f /tmp/fireweave-ready && ollama ps | grep -q "^$FIREWEAVE_MODEL_NAME""#;

/// Name of the Deployment, Service, ConfigMap and NetworkPolicy.
pub fn child_name(ms: &ModelServing) -> String {
    ms.name_any()
}

/// In-cluster URL of the API.
pub fn endpoint(ms: &ModelServing) -> String {
    format!(
        "http://{}.{}.svc:{}",
        child_name(ms),
        ms.namespace().unwrap_or_default(),
        ms.spec.port
    )
}

fn gguf_path(model: &ServedModel) -> String {
    format!("{ARTIFACTS_DIR}/{}", model.uri.trim_start_matches('/'))
}

/// The engine's configuration file: a Modelfile for Ollama, spec.json (gguf resolved) for the built-in server.
/// An error (in words, naming the field) when no template can be chosen for the model.
pub fn config_map(ms: &ModelServing, model: &ServedModel) -> Result<ConfigMap, String> {
    crate::api::model_serving::template_fits(&ms.spec, model.chat_format)?;
    let (key, text) = match ms.spec.engine {
        Engine::Ollama => (
            "Modelfile",
            modelfile::render(&ms.spec.modelfile, &gguf_path(model), model.chat_format)?,
        ),
        Engine::Builtin => {
            let mut spec = ms.spec.clone();
            spec.model = ModelSource {
                training_run_ref: None,
                gguf: Some(GgufFile {
                    path: gguf_path(model),
                    sha256: model.digest.hex(),
                }),
                require_evaluation: ms.spec.model.require_evaluation,
            };
            let doc = crate::contract::document::render(ms, &spec, &BTreeMap::new());
            ("spec.json", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
    };
    Ok(ConfigMap {
        metadata: child_meta(ms, &child_name(ms), COMPONENT),
        data: Some(BTreeMap::from([(key.to_string(), text)])),
        ..Default::default()
    })
}

/// The serving Deployment. Rollouts surge and never take a Ready replica away first.
pub fn deployment(ms: &ModelServing, model: &ServedModel, config: &ConfigMap, settings: &Settings) -> Deployment {
    let name = child_name(ms);
    let port = ms.spec.port;
    let selector = labels(ms, COMPONENT);
    let r = &ms.spec.resources;
    let http_port = ContainerPort {
        name: Some("http".into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let (container, volumes) = match ms.spec.engine {
        Engine::Ollama => (
            Container {
                name: "ollama".into(),
                image: Some(settings.ollama_image.clone()),
                command: Some(vec!["/bin/sh".into(), "-c".into(), OLLAMA_START.into()]),
                env: Some(vec![
                    env("OLLAMA_HOST", &format!("0.0.0.0:{port}")),
                    env("OLLAMA_MODELS", OLLAMA_MODELS_DIR),
                    // Keep the model loaded: readiness checks that it is, and the first request stays fast.
                    env("OLLAMA_KEEP_ALIVE", "-1"),
                    env("HOME", "/tmp"),
                    env("FIREWEAVE_MODEL_NAME", &ms.spec.model_name),
                    env("FIREWEAVE_MODEL_PATH", &gguf_path(model)),
                    env("FIREWEAVE_MODEL_SHA256", &model.digest.hex()),
                    env("FIREWEAVE_SMOKE_PROMPT", &ms.spec.rollout.smoke_prompt),
                ]),
                ports: Some(vec![http_port]),
                readiness_probe: Some(Probe {
                    exec: Some(ExecAction {
                        command: Some(vec!["/bin/sh".into(), "-c".into(), OLLAMA_READY.into()]),
                    }),
                    period_seconds: Some(10),
                    timeout_seconds: Some(5),
                    ..Default::default()
                }),
                liveness_probe: Some(http_probe("/", port, 30)),
                resources: Some(resource_requirements(r, r.gpus.unwrap_or(0))),
                volume_mounts: Some(vec![
                    mount("config", SPEC_DIR, true),
                    mount("artifacts", ARTIFACTS_DIR, true),
                    mount("models", OLLAMA_MODELS_DIR, false),
                    mount("tmp", "/tmp", false),
                ]),
                security_context: Some(container_security_context()),
                ..Default::default()
            },
            vec![empty_dir("models", false), empty_dir("tmp", false)],
        ),
        Engine::Builtin => (
            Container {
                name: "serve".into(),
                image: Some(settings.serve_image.clone()),
                args: Some(
                    [
                        "serve",
                        "--spec",
                        &format!("{SPEC_DIR}/spec.json"),
                        "--addr",
                        &format!("0.0.0.0:{port}"),
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                env: Some(vec![env("FIREWEAVE_LOG_JSON", "true")]),
                ports: Some(vec![http_port]),
                // The built-in server's /readyz answers only once the model is loaded and generates.
                readiness_probe: Some(http_probe("/readyz", port, 10)),
                liveness_probe: Some(http_probe("/healthz", port, 30)),
                resources: Some(resource_requirements(r, r.gpus.unwrap_or(0))),
                volume_mounts: Some(vec![
                    mount("config", SPEC_DIR, true),
                    mount("artifacts", ARTIFACTS_DIR, true),
                    mount("tmp", "/tmp", false),
                ]),
                security_context: Some(container_security_context()),
                ..Default::default()
            },
            vec![empty_dir("tmp", false)],
        ),
    };
    let mut all_volumes = vec![
        crate::controller::workload::spec_volume(&name),
        artifacts_volume(&settings.artifact_pvc, true),
    ];
    all_volumes.iter_mut().for_each(|v| {
        if v.name == "spec" {
            v.name = "config".into();
        }
    });
    all_volumes.extend(volumes);
    let annotations = BTreeMap::from([
        (MODEL_DIGEST_ANNOTATION.to_string(), model.digest.to_string()),
        (CONFIG_HASH_ANNOTATION.to_string(), short_hash(&config.data)),
    ]);
    Deployment {
        metadata: child_meta(ms, &name, COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(ms.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(ms.spec.rollout.max_surge)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: settings.worker_service_account.clone(),
                    security_context: Some(pod_security_context()),
                    node_selector: (!r.node_selector.is_empty()).then(|| r.node_selector.clone()),
                    tolerations: (!r.tolerations.is_empty()).then(|| r.tolerations.clone()),
                    priority_class_name: r.priority_class_name.clone(),
                    containers: vec![container],
                    volumes: Some(all_volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn http_probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

/// The ClusterIP Service clients call.
pub fn service(ms: &ModelServing) -> Service {
    Service {
        metadata: child_meta(ms, &child_name(ms), COMPONENT),
        spec: Some(ServiceSpec {
            selector: Some(labels(ms, COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: ms.spec.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Admits only `allowedClients` to the API port; `None` when the spec lets every Pod in.
pub fn network_policy(ms: &ModelServing) -> Option<NetworkPolicy> {
    if ms.spec.allowed_clients.is_empty() {
        return None;
    }
    let from = ms
        .spec
        .allowed_clients
        .iter()
        .map(|c| NetworkPolicyPeer {
            pod_selector: c.pod_selector.clone(),
            namespace_selector: c.namespace_selector.clone(),
            ip_block: None,
        })
        .collect();
    Some(NetworkPolicy {
        metadata: child_meta(ms, &child_name(ms), COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels(ms, COMPONENT)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(ms.spec.port)),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    })
}
