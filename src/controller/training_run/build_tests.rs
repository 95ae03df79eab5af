use serde_json::json;

use super::build::*;
use crate::api::{ArtifactRef, TrainingRun};
use crate::controller::config::Settings;

fn run() -> TrainingRun {
    serde_json::from_value(json!({
        "apiVersion": "ai.fireweave.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "fw-llama", "namespace": "ai", "uid": "uid-tr"},
        "spec": {
            "baseModel": {"huggingFace": {"repo": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecretRef": {"name": "hf", "key": "token"}}},
            "datasetRef": {"name": "fw"},
            "resources": {
                "gpus": 1, "memory": "48Gi", "cpu": "8",
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "priorityClassName": "training-low"
            }
        }
    }))
    .expect("valid TrainingRun")
}

fn dataset() -> ArtifactRef {
    ArtifactRef {
        uri: "datasets/ai/fw/sha256-abc".into(),
        digest: crate::contract::Digest::of("abc"),
    }
}

#[test]
fn gpu_placement_and_steps_of_the_job() {
    let job = serde_json::to_value(job(&run(), 2, &dataset(), &Settings::example())).expect("serializes");
    assert_eq!(job["metadata"]["name"], "fw-llama-attempt-2");
    assert_eq!(job["spec"]["backoffLimit"], 3);
    assert_eq!(
        job["spec"]["podFailurePolicy"],
        json!({"rules": [{"action": "Ignore", "onPodConditions": [{"status": "True", "type": "DisruptionTarget"}]}]})
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"nvidia.com/gpu.product": "NVIDIA-L4"}));
    assert_eq!(
        pod["tolerations"],
        json!([{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}])
    );
    assert_eq!(pod["priorityClassName"], "training-low");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let env = json!([
        {"name": "FIREWEAVE_LOG_JSON", "value": "true"},
        {"name": "FIREWEAVE_DATASET_URI", "value": "datasets/ai/fw/sha256-abc"},
        {"name": "FIREWEAVE_DATASET_DIGEST", "value": crate::contract::digest::fake("abc")},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"key": "token", "name": "hf"}}}
    ]);
    let mounts = json!([
        {"mountPath": "/etc/fireweave", "name": "spec", "readOnly": true},
        {"mountPath": "/artifacts", "name": "artifacts"},
        {"mountPath": "/tmp", "name": "tmp"},
        {"mountPath": "/dev/shm", "name": "dshm"}
    ]);
    let hardened = json!({
        "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false,
        "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}
    });
    let cpu_step = |name: &str| {
        json!({
            "args": [name, "--spec", "/etc/fireweave/spec.json", "--artifacts", "/artifacts"],
            "env": env,
            "image": "fireweave-ai-trainer:test",
            "name": name,
            "resources": {"limits": {"memory": "48Gi"}, "requests": {"cpu": "8", "memory": "48Gi"}},
            "securityContext": hardened,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": mounts
        })
    };
    assert_eq!(
        pod["initContainers"],
        json!([{
            "args": ["train", "--spec", "/etc/fireweave/spec.json", "--artifacts", "/artifacts"],
            "env": env,
            "image": "fireweave-ai-trainer:test",
            "name": "train",
            "ports": [{"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
            "resources": {"limits": {"memory": "48Gi", "nvidia.com/gpu": "1"}, "requests": {"cpu": "8", "memory": "48Gi"}},
            "securityContext": hardened,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": mounts
        }, cpu_step("quantize")])
    );
    // The evaluation runs last, after both; without one, quantize is the main container.
    assert_eq!(pod["containers"], json!([cpu_step("evaluate")]));
    let mut unevaluated = run();
    unevaluated.spec.evaluation.enabled = false;
    let job2 =
        serde_json::to_value(super::build::job(&unevaluated, 2, &dataset(), &Settings::example())).expect("serializes");
    let pod2 = &job2["spec"]["template"]["spec"];
    assert_eq!(pod2["containers"], json!([cpu_step("quantize")]));
    assert_eq!(pod2["initContainers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        pod["securityContext"],
        json!({"fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        pod["volumes"],
        json!([
            {"configMap": {"name": "fw-llama-attempt-2"}, "name": "spec"},
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": "fireweave-artifacts"}},
            {"emptyDir": {}, "name": "tmp"},
            {"emptyDir": {"medium": "Memory"}, "name": "dshm"}
        ])
    );
}

#[test]
fn gpu_defaults_to_one_when_unset() {
    let mut tr = run();
    tr.spec.resources = Default::default();
    let job = serde_json::to_value(job(&tr, 1, &dataset(), &Settings::example())).expect("serializes");
    let train = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(train["resources"], json!({"limits": {"nvidia.com/gpu": "1"}}));
    assert!(job["spec"]["template"]["spec"].get("nodeSelector").is_none());
}

#[test]
fn spec_json_names_the_dataset_build() {
    let cm = config_map(&run(), 1, &dataset());
    let doc: serde_json::Value = serde_json::from_str(&cm.data.expect("data")["spec.json"]).expect("JSON");
    assert_eq!(
        doc["metadata"]["annotations"][crate::contract::annotations::DATASET_DIGEST],
        crate::contract::digest::fake("abc")
    );
    assert_eq!(doc["spec"]["hyperparameters"]["learningRate"], 2e-4);
    assert_eq!(doc["spec"]["export"]["gguf"], json!(["Q4_K_M", "Q5_K_M", "Q8_0"]));
    assert_eq!(doc["spec"]["baseQuantization"], "nf4");
}

#[test]
fn retraining_is_needed_for_training_inputs_only() {
    let base = inputs_digest(&run().spec, &dataset());
    let mut moved = run();
    moved.spec.resources.node_selector.clear();
    assert_eq!(
        inputs_digest(&moved.spec, &dataset()),
        base,
        "placement alone does not retrain"
    );
    let mut lr = run();
    lr.spec.hyperparameters.learning_rate = 1e-4;
    assert_ne!(inputs_digest(&lr.spec, &dataset()), base);
    let newer = ArtifactRef {
        digest: crate::contract::Digest::of("def"),
        ..dataset()
    };
    assert_ne!(inputs_digest(&run().spec, &newer), base, "a new dataset build retrains");
}
