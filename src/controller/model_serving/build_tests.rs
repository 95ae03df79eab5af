use serde_json::json;

use super::build::*;
use crate::api::{ModelServing, Quantization, ServedModel};
use crate::controller::config::Settings;

fn serving(engine: &str) -> ModelServing {
    serde_json::from_value(json!({
        "apiVersion": "ai.fireweave.io/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": "nse", "namespace": "ai", "uid": "uid-ms"},
        "spec": {
            "model": {"trainingRunRef": {"name": "fw-llama"}},
            "engine": engine,
            "replicas": 2,
            "resources": {"gpus": 1, "memory": "16Gi"},
            "allowedClients": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}]
        }
    }))
    .expect("valid ModelServing")
}

fn model() -> ServedModel {
    ServedModel {
        digest: crate::contract::Digest::parse(&"a".repeat(64)).unwrap(),
        quantization: Some(Quantization::Q4KM),
        source: "trainingrun/fw-llama".into(),
        uri: "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf".into(),
        chat_format: Some(crate::chat::ChatFormat::Llama3),
        evaluation: Some("passed (attempt 1)".into()),
    }
}

fn labels() -> serde_json::Value {
    json!({
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/instance": "nse",
        "app.kubernetes.io/managed-by": "fireweave-ai-operator",
        "app.kubernetes.io/name": "fireweave-ai"
    })
}

#[test]
fn builtin_deployment_is_the_whole_desired_object() {
    let ms = serving("builtin");
    let cm = config_map(&ms, &model()).unwrap();
    let d = serde_json::to_value(deployment(&ms, &model(), &cm, &Settings::example())).expect("serializes");
    let config_hash = d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].clone();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "labels": labels(), "name": "nse", "namespace": "ai",
            "ownerReferences": [{"apiVersion": "ai.fireweave.io/v1alpha1", "controller": true, "kind": "ModelServing", "name": "nse", "uid": "uid-ms"}]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels()},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}, "type": "RollingUpdate"},
            "template": {
                "metadata": {
                    "annotations": {MODEL_DIGEST_ANNOTATION: model().digest, CONFIG_HASH_ANNOTATION: config_hash},
                    "labels": labels()
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "args": ["serve", "--spec", "/etc/fireweave/spec.json", "--addr", "0.0.0.0:11434"],
                        "env": [{"name": "FIREWEAVE_LOG_JSON", "value": "true"}],
                        "image": "fireweave-ai-serve:test",
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 11434}, "periodSeconds": 30, "timeoutSeconds": 5},
                        "name": "serve",
                        "ports": [{"containerPort": 11434, "name": "http", "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 11434}, "periodSeconds": 10, "timeoutSeconds": 5},
                        "resources": {"limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}, "requests": {"memory": "16Gi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false,
                            "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}
                        },
                        "volumeMounts": [
                            {"mountPath": "/etc/fireweave", "name": "config", "readOnly": true},
                            {"mountPath": "/artifacts", "name": "artifacts", "readOnly": true},
                            {"mountPath": "/tmp", "name": "tmp"}
                        ]
                    }],
                    "securityContext": {
                        "fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "volumes": [
                        {"configMap": {"name": "nse"}, "name": "config"},
                        {"name": "artifacts", "persistentVolumeClaim": {"claimName": "fireweave-artifacts", "readOnly": true}},
                        {"emptyDir": {}, "name": "tmp"}
                    ]
                }
            }
        }
    });
    assert_eq!(d, expected);
    let spec: serde_json::Value = serde_json::from_str(&cm.data.expect("data")["spec.json"]).expect("JSON");
    assert_eq!(
        spec["spec"]["model"],
        json!({"gguf": {"path": "/artifacts/runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf", "sha256": "a".repeat(64)},
               "requireEvaluation": true})
    );
}

#[test]
fn ollama_registers_the_verified_gguf_and_is_ready_only_when_it_answers() {
    let ms = serving("ollama");
    let cm = config_map(&ms, &model()).unwrap();
    let modelfile = &cm.data.as_ref().expect("data")["Modelfile"];
    assert!(modelfile.starts_with("FROM /artifacts/runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf\n"));
    let d = serde_json::to_value(deployment(&ms, &model(), &cm, &Settings::example())).expect("serializes");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ollama/ollama:test");
    let script = c["command"][2].as_str().expect("start script");
    // Digest checked, model registered from the mounted file, smoke prompt answered; no network fetches.
    assert!(
        script.contains("sha256sum -c -")
            && script.contains("ollama create \"$FIREWEAVE_MODEL_NAME\" -f /etc/fireweave/Modelfile")
    );
    assert!(script.contains("ollama run") && !script.contains("pull") && !script.contains("apt"));
    assert!(
        c["readinessProbe"]["exec"]["command"][2]
            .as_str()
            .expect("probe")
            .contains("ollama ps")
    );
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").into(),
                e["value"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(env.contains(&("FIREWEAVE_MODEL_SHA256".into(), "a".repeat(64))));
    assert!(env.contains(&("OLLAMA_HOST".into(), "0.0.0.0:11434".into())));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "models" && v["emptyDir"].is_object())
    );
}

#[test]
fn new_gguf_changes_the_pod_template() {
    let ms = serving("ollama");
    let cm = config_map(&ms, &model()).unwrap();
    let a = deployment(&ms, &model(), &cm, &Settings::example());
    let newer = ServedModel {
        digest: crate::contract::Digest::parse(&"b".repeat(64)).unwrap(),
        ..model()
    };
    let b = deployment(&ms, &newer, &config_map(&ms, &newer).unwrap(), &Settings::example());
    assert_ne!(
        a.spec.as_ref().map(|s| &s.template),
        b.spec.as_ref().map(|s| &s.template)
    );
}

#[test]
fn service_and_network_policy() {
    let ms = serving("builtin");
    assert_eq!(
        serde_json::to_value(service(&ms)).expect("serializes")["spec"],
        json!({"ports": [{"name": "http", "port": 11434, "protocol": "TCP", "targetPort": "http"}], "selector": labels()})
    );
    assert_eq!(
        serde_json::to_value(network_policy(&ms).expect("allowedClients set")).expect("serializes")["spec"],
        json!({
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}], "ports": [{"port": 11434, "protocol": "TCP"}]}],
            "podSelector": {"matchLabels": labels()},
            "policyTypes": ["Ingress"]
        })
    );
    let mut open = serving("builtin");
    open.spec.allowed_clients.clear();
    assert!(network_policy(&open).is_none());
    assert_eq!(endpoint(&ms), "http://nse.ai.svc:11434");
}
