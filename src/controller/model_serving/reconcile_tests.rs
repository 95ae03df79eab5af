use std::sync::Arc;

use serde_json::{Value, json};

use super::build;
use super::reconcile::{reconcile, wanted_model};
use crate::api::{ModelServing, TrainingRun};
use crate::controller::config::Settings;
use crate::controller::context::Context;
use crate::controller::fake_api::{FakeApiServer, calls};
use crate::controller::test_support::{condition, reconcile_at, status_at, writes};

const MS: &str = "/apis/ai.fireweave.io/v1alpha1/namespaces/ai/modelservings/nse";
const TR: &str = "/apis/ai.fireweave.io/v1alpha1/namespaces/ai/trainingruns/fw-llama";
const DEPLOY: &str = "/apis/apps/v1/namespaces/ai/deployments/nse";
const CM: &str = "/api/v1/namespaces/ai/configmaps/nse";
const SVC: &str = "/api/v1/namespaces/ai/services/nse";
const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/ai/networkpolicies/nse";
const APPLY: &str = "?&force=true&fieldManager=fireweave-ai-operator";

fn serving_json() -> Value {
    json!({
        "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing",
        "metadata": {"name": "nse", "namespace": "ai", "uid": "uid-ms", "generation": 1},
        "spec": {
            "model": {"trainingRunRef": {"name": "fw-llama", "quantization": "Q4_K_M"}},
            "replicas": 2,
            "allowedClients": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}]
        }
    })
}

/// A run whose attempt 1 made these GGUF files and passed its evaluation.
fn run_with_gguf(digest: &str) -> Value {
    let gguf = json!([
        {"quantization": "Q8_0", "uri": "runs/ai/fw-llama/gguf/fw-llama-Q8_0.gguf", "digest": crate::contract::digest::fake("q8"), "sizeBytes": 8},
        {"quantization": "Q4_K_M", "uri": "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf", "digest": digest, "sizeBytes": 4}
    ]);
    json!({
        "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "fw-llama", "namespace": "ai", "uid": "uid-tr", "generation": 1},
        "spec": {"baseModel": {"path": "models/base"}, "datasetRef": {"name": "fw"}},
        "status": {"phase": "Succeeded", "attempt": 1, "artifacts": {"gguf": gguf, "chatFormat": "llama3"},
                   "evaluation": {"passed": true},
                   "passed": {"attempt": 1, "gguf": gguf, "chatFormat": "llama3"}}
    })
}

fn ctx(fake: &FakeApiServer) -> Arc<Context> {
    Arc::new(Context::new(fake.client(), Settings::example()))
}

/// What the Deployment controller would report once the current template runs everywhere and is Ready.
fn deployment_settles(fake: &FakeApiServer, ready: i32) {
    let mut d = fake.get(DEPLOY).expect("deployment");
    let generation = d["metadata"]["generation"].clone();
    d["status"] = json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2, "readyReplicas": ready, "availableReplicas": ready});
    fake.insert(d);
}

fn template_digest(fake: &FakeApiServer) -> Value {
    fake.get(DEPLOY).expect("deployment")["spec"]["template"]["metadata"]["annotations"][build::MODEL_DIGEST_ANNOTATION]
        .clone()
}

#[tokio::test]
async fn waits_for_gguf_then_rolls_out_and_then_writes_nothing() {
    let fake = FakeApiServer::new();
    fake.insert(serving_json());
    let ctx = ctx(&fake);

    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let first = fake.take_requests();
    // The Service and the NetworkPolicy come first: they do not depend on the model.
    assert_eq!(
        calls(&first),
        [
            format!("GET {SVC}"),
            format!("PATCH {SVC}{APPLY}"),
            format!("GET {NETPOL}"),
            format!("PATCH {NETPOL}{APPLY}"),
            format!("GET {TR}"),
            format!("PATCH {MS}/status{APPLY}")
        ]
    );
    let status = status_at(&fake, MS);
    assert_eq!(status["phase"], "Pending");
    let waiting = condition(&status, "Reconciling");
    assert_eq!(
        (waiting["reason"].as_str(), waiting["message"].as_str()),
        (
            Some("WaitingForTrainingRun"),
            Some("TrainingRun fw-llama does not exist yet")
        )
    );

    fake.insert(run_with_gguf(&crate::contract::digest::fake("v1")));
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert_eq!(
        calls(&requests),
        [
            // Unchanged since the first reconcile: read (no cache in this test), not written.
            format!("GET {SVC}"),
            format!("GET {NETPOL}"),
            format!("GET {TR}"),
            format!("GET {CM}"),
            format!("PATCH {CM}{APPLY}"),
            format!("GET {DEPLOY}"),
            format!("PATCH {DEPLOY}{APPLY}"),
            // Rolling out is no step's end yet: the status says it, no Event.
            format!("PATCH {MS}/status{APPLY}"),
        ]
    );
    // Bodies are the builders' objects for the resolved model.
    let ms: ModelServing = serde_json::from_value(serving_json()).expect("ms");
    let run: TrainingRun = serde_json::from_value(run_with_gguf(&crate::contract::digest::fake("v1"))).expect("run");
    let model = wanted_model(&ms, Some(&run)).expect("model");
    assert_eq!(model.uri, "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf");
    let cm = build::config_map(&ms, &model).unwrap();
    assert_eq!(requests[4].body, Some(serde_json::to_value(&cm).expect("cm")));
    assert_eq!(
        requests[6].body,
        Some(serde_json::to_value(build::deployment(&ms, &model, &cm, &ctx.settings)).expect("d"))
    );
    assert_eq!(
        first[1].body,
        Some(serde_json::to_value(build::service(&ms)).expect("svc"))
    );
    assert_eq!(
        first[3].body,
        Some(serde_json::to_value(build::network_policy(&ms).expect("policy")).expect("np"))
    );
    let status = status_at(&fake, MS);
    assert_eq!(
        (status["phase"].as_str(), status["servedModel"].as_object()),
        (Some("RollingOut"), None)
    );
    assert_eq!(status["endpoint"], "http://nse.ai.svc:11434");

    deployment_settles(&fake, 2);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let status = status_at(&fake, MS);
    assert_eq!(
        (status["phase"].as_str(), status["readyReplicas"].as_i64()),
        (Some("Serving"), Some(2))
    );
    assert_eq!(status["servedModel"]["digest"], crate::contract::digest::fake("v1"));
    assert_eq!(
        condition(&status, "Ready")["message"],
        format!(
            "2 replica(s) serve network-security-expert ({})",
            crate::contract::Digest::of("v1").short()
        )
    );
    fake.take_requests();

    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let again = fake.take_requests();
    assert!(writes(&again).is_empty(), "second reconcile wrote: {:?}", calls(&again));
}

#[tokio::test]
async fn a_new_gguf_rolls_out_while_the_old_digest_keeps_serving() {
    let fake = FakeApiServer::new();
    fake.insert(serving_json());
    fake.insert(run_with_gguf(&crate::contract::digest::fake("v1")));
    let ctx = ctx(&fake);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    deployment_settles(&fake, 2);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    assert_eq!(template_digest(&fake), crate::contract::digest::fake("v1"));

    // The run retrained: a new Q4_K_M digest. The pod template changes (a rolling update with surge and no
    // unavailability) but status keeps naming v1 until the Deployment has rolled v2 out everywhere.
    fake.insert(run_with_gguf(&crate::contract::digest::fake("v2")));
    fake.take_requests();
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert!(
        writes(&requests).contains(&format!("PATCH {DEPLOY}{APPLY}")),
        "{:?}",
        calls(&requests)
    );
    assert_eq!(template_digest(&fake), crate::contract::digest::fake("v2"));
    let strategy = fake.get(DEPLOY).expect("d")["spec"]["strategy"].clone();
    assert_eq!(
        strategy,
        json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}, "type": "RollingUpdate"})
    );
    let mut d = fake.get(DEPLOY).expect("d");
    assert_eq!(
        d["metadata"]["generation"], 2,
        "the API server counts the template change"
    );
    d["status"] = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2});
    fake.insert(d);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let status = status_at(&fake, MS);
    assert_eq!(
        (status["phase"].as_str(), status["servedModel"]["digest"].as_str()),
        (Some("RollingOut"), Some(crate::contract::digest::fake("v1").as_str()))
    );
    assert_eq!(
        condition(&status, "Reconciling")["message"],
        format!(
            "rolling out {}: 1/2 replicas updated, 2 ready",
            crate::contract::Digest::of("v2").short()
        )
    );

    let mut d = fake.get(DEPLOY).expect("d");
    d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2});
    fake.insert(d);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let status = status_at(&fake, MS);
    assert_eq!(
        (status["phase"].as_str(), status["servedModel"]["digest"].as_str()),
        (Some("Serving"), Some(crate::contract::digest::fake("v2").as_str()))
    );
}

#[tokio::test]
async fn a_missing_quantization_is_explained_and_clearing_clients_removes_the_policy() {
    let fake = FakeApiServer::new();
    let mut ms = serving_json();
    ms["spec"]["model"]["trainingRunRef"]["quantization"] = json!("Q5_K_M");
    fake.insert(ms);
    fake.insert(run_with_gguf(&crate::contract::digest::fake("v1")));
    let ctx = ctx(&fake);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    assert_eq!(
        condition(&status_at(&fake, MS), "Reconciling")["message"],
        "TrainingRun fw-llama produced no Q5_K_M GGUF (it has Q8_0, Q4_K_M); add it to its spec.export.gguf"
    );

    let mut ms = fake.get(MS).expect("ms");
    ms["spec"]["model"]["trainingRunRef"]["quantization"] = json!("Q4_K_M");
    fake.insert(ms);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    assert!(fake.get(NETPOL).is_some());
    let mut ms = fake.get(MS).expect("ms");
    ms["spec"]["allowedClients"] = json!([]);
    fake.insert(ms);
    fake.take_requests();
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    assert!(writes(&fake.take_requests()).contains(&format!("DELETE {NETPOL}")));
    assert!(fake.get(NETPOL).is_none());
}

#[tokio::test]
async fn a_gguf_file_is_served_without_a_training_run() {
    let fake = FakeApiServer::new();
    let mut ms = serving_json();
    ms["spec"]["model"] = json!({"gguf": {"path": "models/nse-q4.gguf", "sha256": "b".repeat(64)}});
    ms["spec"]["engine"] = json!("builtin");
    fake.insert(ms);
    let ctx = ctx(&fake);
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert!(
        !calls(&requests).iter().any(|c| c.contains("/trainingruns/")),
        "no TrainingRun is read: {:?}",
        calls(&requests)
    );
    assert!(calls(&requests).contains(&format!("PATCH {CM}{APPLY}")));
    let cm = fake.get(CM).expect("config");
    let spec: Value = serde_json::from_str(cm["data"]["spec.json"].as_str().expect("spec.json")).expect("json");
    assert_eq!(
        spec["spec"]["model"]["gguf"],
        json!({"path": "/artifacts/models/nse-q4.gguf", "sha256": "b".repeat(64)})
    );
}

#[tokio::test]
async fn a_malformed_object_fails_alone() {
    let fake = FakeApiServer::new();
    let ctx = ctx(&fake);
    let mut broken: ModelServing = serde_json::from_value(serving_json()).expect("ms");
    broken.metadata.namespace = None;
    assert_eq!(
        reconcile(Arc::new(broken), ctx.clone())
            .await
            .expect_err("no namespace")
            .category(),
        "invalid_object"
    );
    fake.insert(serving_json());
    fake.insert(run_with_gguf(&crate::contract::digest::fake("v1")));
    reconcile_at::<ModelServing, _, _>(&fake, MS, &ctx, reconcile).await;
    assert!(fake.get(DEPLOY).is_some());
}
