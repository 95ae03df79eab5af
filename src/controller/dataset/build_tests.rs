use serde_json::json;

use super::build::*;
use crate::api::Dataset;
use crate::controller::config::Settings;

fn dataset() -> Dataset {
    serde_json::from_value(json!({
        "apiVersion": "ai.fireweave.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "fw", "namespace": "ai", "uid": "uid-ds"},
        "spec": {
            "sources": [{"path": "examples/data/fireweave"}, {"configMap": {"name": "extra-qa", "key": "qa.jsonl"}}],
            "synthesis": {"provider": "openai", "model": "gpt-4o", "apiKeySecretRef": {"name": "openai", "key": "api-key"}}
        }
    }))
    .expect("valid Dataset")
}

fn hardened_container() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

#[test]
fn job_is_the_whole_desired_object() {
    let ds = dataset();
    let name = job_name(&ds);
    assert!(name.starts_with("fw-") && name.len() == 13, "{name}");
    let labels = json!({
        "app.kubernetes.io/component": "dataset",
        "app.kubernetes.io/instance": "fw",
        "app.kubernetes.io/managed-by": "fireweave-ai-operator",
        "app.kubernetes.io/name": "fireweave-ai"
    });
    let expected = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "labels": labels,
            "name": name,
            "namespace": "ai",
            "ownerReferences": [{"apiVersion": "ai.fireweave.io/v1alpha1", "controller": true, "kind": "Dataset", "name": "fw", "uid": "uid-ds"}]
        },
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "args": ["dataset", "--spec", "/etc/fireweave/spec.json", "--artifacts", "/artifacts"],
                        "env": [
                            {"name": "FIREWEAVE_LOG_JSON", "value": "true"},
                            {"name": "FIREWEAVE_CONFIGMAP_DIR", "value": "/etc/fireweave-sources"},
                            {"name": "FIREWEAVE_SYNTHESIS_API_KEY", "valueFrom": {"secretKeyRef": {"key": "api-key", "name": "openai"}}}
                        ],
                        "image": "fireweave-ai:test",
                        "name": "dataset",
                        "ports": [{"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
                        "securityContext": hardened_container(),
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "volumeMounts": [
                            {"mountPath": "/etc/fireweave", "name": "spec", "readOnly": true},
                            {"mountPath": "/artifacts", "name": "artifacts"},
                            {"mountPath": "/tmp", "name": "tmp"},
                            {"mountPath": "/etc/fireweave-sources/extra-qa", "name": "source-0", "readOnly": true}
                        ]
                    }],
                    "restartPolicy": "Never",
                    "securityContext": {
                        "fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "volumes": [
                        {"configMap": {"name": name}, "name": "spec"},
                        {"name": "artifacts", "persistentVolumeClaim": {"claimName": "fireweave-artifacts"}},
                        {"emptyDir": {}, "name": "tmp"},
                        {"configMap": {"name": "extra-qa"}, "name": "source-0"}
                    ]
                }
            }
        }
    });
    assert_eq!(
        serde_json::to_value(job(&ds, &Settings::example())).expect("serializes"),
        expected
    );
}

#[test]
fn config_map_holds_the_cr_as_workers_read_it() {
    let ds = dataset();
    let cm = config_map(&ds);
    assert_eq!(cm.metadata.name, Some(job_name(&ds)));
    let text = &cm.data.as_ref().expect("data")["spec.json"];
    let doc: serde_json::Value = serde_json::from_str(text).expect("spec.json is JSON");
    assert_eq!(doc["apiVersion"], "ai.fireweave.io/v1alpha1");
    assert_eq!(doc["kind"], "Dataset");
    assert_eq!(doc["metadata"], json!({"name": "fw", "namespace": "ai"}));
    // Defaults are spelled out, so a worker reads the same values the operator validated.
    assert_eq!(doc["spec"]["filters"]["minQualityScore"], 50);
    assert_eq!(doc["spec"]["split"], json!({"evalFraction": 0.1, "seed": 42}));
    assert_eq!(doc["spec"]["tools"].as_array().map(Vec::len), Some(3));
    let back: Dataset = serde_json::from_value(doc).expect("a worker can deserialize spec.json as a Dataset");
    assert_eq!(back.spec, ds.spec);
}

#[test]
fn a_spec_change_means_a_new_job() {
    let a = dataset();
    let mut b = dataset();
    b.spec.filters.min_quality_score = 60;
    assert_ne!(job_name(&a), job_name(&b));
    assert_eq!(job_name(&a), job_name(&dataset()));
}
