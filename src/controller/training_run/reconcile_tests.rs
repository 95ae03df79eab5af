use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::reconcile::reconcile;
use crate::api::TrainingRun;
use crate::controller::config::Settings;
use crate::controller::context::Context;
use crate::controller::fake_api::{FakeApiServer, calls};
use crate::controller::test_support::{condition, reconcile_at, status_at, writes};

const TR: &str = "/apis/ai.fireweave.io/v1alpha1/namespaces/ai/trainingruns/fw-llama";
const DS: &str = "/apis/ai.fireweave.io/v1alpha1/namespaces/ai/datasets/fw";
const JOB1: &str = "/apis/batch/v1/namespaces/ai/jobs/fw-llama-attempt-1";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ai/events";
const APPLY: &str = "?&force=true&fieldManager=fireweave-ai-operator";

fn run_json(retention: &str) -> Value {
    json!({
        "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "fw-llama", "namespace": "ai", "uid": "uid-tr", "generation": 1},
        "spec": {
            "baseModel": {"path": "models/llama-3.1-8b-instruct"},
            "datasetRef": {"name": "fw"},
            "resources": {"gpus": 1, "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
            "artifactRetention": retention
        }
    })
}

fn ready_dataset(digest: &str) -> Value {
    json!({
        "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset",
        "metadata": {"name": "fw", "namespace": "ai", "uid": "uid-ds", "generation": 1},
        "spec": {"sources": [{"path": "examples/data/fireweave"}]},
        "status": {"phase": "Succeeded", "artifact": {"uri": format!("datasets/ai/fw/{digest}"), "digest": digest},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    })
}

fn ctx(fake: &FakeApiServer, mount: &std::path::Path, metrics_port: u16) -> Arc<Context> {
    let mut settings = Settings::example();
    settings.artifact_mount = mount.to_path_buf();
    let mut ctx = Context::new(fake.client(), settings);
    ctx.trainer_metrics_port = metrics_port;
    Arc::new(ctx)
}

fn set_job_status(fake: &FakeApiServer, path: &str, status: Value) {
    let mut job = fake.get(path).expect("job exists");
    job["status"] = status;
    fake.insert(job);
}

/// A Pod of an attempt's Job: train and quantize as init containers, evaluate as the main one.
fn pod(name: &str, job: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "ai", "labels": {"job-name": job}},
           "spec": {"initContainers": [{"name": "train"}, {"name": "quantize"}], "containers": [{"name": "evaluate"}]},
           "status": status})
}

fn terminated(name: &str, code: i32, reason: &str, message: &str) -> Value {
    json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
           "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}})
}

/// A real HTTP server standing in for the trainer's /metrics on the Pod IP (127.0.0.1 here).
async fn metrics_server(body: Arc<Mutex<Option<String>>>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.lock().expect("lock").clone();
            async move {
                match body {
                    Some(text) => (axum::http::StatusCode::OK, text),
                    None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    port
}

#[tokio::test]
async fn waits_for_the_dataset_then_creates_the_attempt_and_then_writes_nothing() {
    let fake = FakeApiServer::new();
    fake.insert(run_json("Retain"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path(), 1);

    // No Dataset yet: a waiting condition, no Job (and no Event: waiting is no step's end).
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert_eq!(
        calls(&requests),
        [format!("GET {DS}"), format!("PATCH {TR}/status{APPLY}")]
    );
    let status = status_at(&fake, TR);
    assert_eq!(status["phase"], "Pending");
    let reconciling = condition(&status, "Reconciling");
    assert_eq!(
        (reconciling["status"].as_str(), reconciling["reason"].as_str()),
        (Some("True"), Some("WaitingForDataset"))
    );
    assert_eq!(reconciling["message"], "Dataset fw does not exist yet");

    // Waiting again changes nothing and writes nothing.
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert_eq!(calls(&fake.take_requests()), [format!("GET {DS}")]);

    // The Dataset is Ready: attempt 1's ConfigMap and Job, exactly as the builders make them.
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    let cm = "/api/v1/namespaces/ai/configmaps/fw-llama-attempt-1";
    assert_eq!(
        calls(&requests),
        [
            format!("GET {DS}"),
            format!("GET {cm}"),
            format!("PATCH {cm}{APPLY}"),
            format!("GET {JOB1}"),
            format!("PATCH {JOB1}{APPLY}"),
            "GET /api/v1/namespaces/ai/pods?&labelSelector=job-name%3Dfw-llama-attempt-1".to_string(),
            format!("PATCH {TR}/status{APPLY}"),
        ]
    );
    let tr: TrainingRun = serde_json::from_value(run_json("Retain")).expect("run");
    let artifact = crate::api::ArtifactRef {
        uri: format!("datasets/ai/fw/{}", crate::contract::digest::fake("d1")),
        digest: crate::contract::Digest::of("d1"),
    };
    let job = serde_json::to_value(super::build::job(&tr, 1, &artifact, &ctx.settings)).expect("job");
    assert_eq!(requests[4].body.as_ref(), Some(&job));
    let status = status_at(&fake, TR);
    assert_eq!(
        (status["attempt"].as_u64(), status["jobName"].as_str()),
        (Some(1), Some("fw-llama-attempt-1"))
    );
    assert_eq!(status["dataset"]["digest"], crate::contract::digest::fake("d1"));
    assert_eq!(condition(&status, "Reconciling")["reason"], "JobPending");

    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let again = fake.take_requests();
    assert!(writes(&again).is_empty(), "second reconcile wrote: {:?}", calls(&again));
}

#[tokio::test]
async fn preempted_trainer_resumes_and_progress_continues_then_artifacts_land_in_status() {
    let fake = FakeApiServer::new();
    fake.insert(run_json("Retain"));
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Mutex::new(None));
    let ctx = ctx(&fake, dir.path(), metrics_server(metrics.clone()).await);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let job = "fw-llama-attempt-1";

    // Training: progress from the trainer's metrics.
    set_job_status(&fake, JOB1, json!({"active": 1}));
    fake.insert(pod("p1", job, json!({"phase": "Running", "podIP": "127.0.0.1"})));
    *metrics.lock().expect("lock") =
        Some("fireweave_train_step 40\nfireweave_train_total_steps 100\nfireweave_train_loss 1.5\n".into());
    fake.take_requests();
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let status = status_at(&fake, TR);
    assert_eq!(
        (status["phase"].as_str(), status["progress"]["display"].as_str()),
        (Some("Training"), Some("40/100 (40%)"))
    );
    assert_eq!(
        condition(&status, "Reconciling")["message"],
        "attempt 1 is training (step 40/100 (40%))"
    );

    // Preempted: p1 is a DisruptionTarget, p2 starts and does not report yet. Progress holds; no new Job.
    fake.insert(pod(
        "p1",
        job,
        json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
    ));
    fake.insert(pod("p2", job, json!({"phase": "Running", "podIP": "127.0.0.1"})));
    *metrics.lock().expect("lock") = None;
    fake.take_requests();
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert!(
        !writes(&requests).iter().any(|w| w.contains("/jobs/")),
        "the Job is not touched: {:?}",
        calls(&requests)
    );
    let status = status_at(&fake, TR);
    assert_eq!(
        (status["restarts"].as_u64(), status["progress"]["step"].as_u64()),
        (Some(1), Some(40))
    );
    assert_eq!(status["attempt"], 1);

    // p2 resumed from the step-40 checkpoint and goes on; p1 is gone (an evicted Pod is deleted once the Job
    // controller has counted it; here it just no longer carries the Job's label) and still counts.
    fake.insert(pod("p1", "another-job", json!({"phase": "Failed"})));
    *metrics.lock().expect("lock") =
        Some("fireweave_train_step 60\nfireweave_train_total_steps 100\nfireweave_train_loss 1.2\n".into());
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let status = status_at(&fake, TR);
    assert_eq!(
        (
            status["progress"]["step"].as_u64(),
            status["progress"]["loss"].as_f64(),
            status["restarts"].as_u64()
        ),
        (Some(60), Some(1.2), Some(1))
    );

    // Train done, quantizing, evaluating, then the Job completes: the workers' results become
    // status.artifacts, the evaluation status.evaluation, and the GGUF files passed ones.
    let train = json!({"adapter": {"uri": "runs/ai/fw-llama/adapter", "digest": crate::contract::digest::fake("ad")}, "merged": {"uri": "runs/ai/fw-llama/merged", "digest": crate::contract::digest::fake("me")},
                       "finalLoss": 0.91, "evalLoss": 1.05, "steps": 100, "tokens": 81920, "chatFormat": "llama3"});
    let gguf = json!([{"quantization": "Q4_K_M", "uri": "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf", "digest": crate::contract::digest::fake("q4"), "sizeBytes": 4920734016_u64}]);
    let trained = terminated("train", 0, "Completed", &train.to_string());
    let quantized = terminated("quantize", 0, "Completed", &json!({"gguf": gguf}).to_string());
    fake.insert(pod(
        "p2",
        job,
        json!({"phase": "Running", "podIP": "127.0.0.1", "initContainerStatuses": [trained]}),
    ));
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert_eq!(status_at(&fake, TR)["phase"], "Quantizing");
    fake.insert(pod(
        "p2",
        job,
        json!({"phase": "Running", "podIP": "127.0.0.1", "initContainerStatuses": [trained, quantized]}),
    ));
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert_eq!(status_at(&fake, TR)["phase"], "Evaluating");
    set_job_status(
        &fake,
        JOB1,
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    let evaluation = json!({"passed": true, "base": {"loss": 1.4}, "adapter": {"loss": 1.05},
        "gguf": [{"quantization": "Q4_K_M", "digest": crate::contract::digest::fake("q4"), "loss": 1.1,
                  "lossIncrease": 0.05, "templateMatch": true}], "examples": 11});
    fake.insert(pod(
        "p2",
        job,
        json!({"phase": "Succeeded", "initContainerStatuses": [trained, quantized],
        "containerStatuses": [terminated("evaluate", 0, "Completed", &evaluation.to_string())]}),
    ));
    fake.take_requests();
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert_eq!(
        writes(&requests),
        [format!("PATCH {TR}/status{APPLY}"), format!("POST {EVENTS}")]
    );
    let status = status_at(&fake, TR);
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["artifacts"]["gguf"], gguf);
    assert_eq!(status["artifacts"]["adapter"], train["adapter"]);
    assert_eq!(
        status["passed"],
        json!({"attempt": 1, "gguf": gguf, "chatFormat": "llama3"})
    );
    assert_eq!(status["evaluation"]["passed"], true);
    assert_eq!(
        (status["finalLoss"].as_f64(), status["evalLoss"].as_f64()),
        (Some(0.91), Some(1.05))
    );
    assert_eq!(status["progress"]["display"], "100/100 (100%)");
    assert_eq!(
        condition(&status, "Ready")["message"],
        "trained 100 steps, final loss 0.9100; GGUF: Q4_K_M; evaluation passed (eval loss 1.0500 (base 1.4000), Q4_K_M +0.0500)"
    );
    assert_eq!(condition(&status, "Evaluated")["reason"], "GatePassed");
}

/// A model that fails its evaluation gate is recorded, with why, and not handed to servings: the run is
/// Stalled (Argo CD: Degraded), `passed` keeps the earlier attempt's files.
#[tokio::test]
async fn a_failed_gate_stalls_the_run_and_keeps_the_earlier_passed_model() {
    let fake = FakeApiServer::new();
    let mut run = run_json("Retain");
    let earlier = json!([{"quantization": "Q4_K_M", "uri": "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf", "digest": crate::contract::digest::fake("old"), "sizeBytes": 4}]);
    run["status"] = json!({"attempt": 0, "passed": {"attempt": 7, "gguf": earlier, "chatFormat": "llama3"}});
    fake.insert(run);
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path(), 1);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let train = json!({"adapter": {"uri": "a", "digest": crate::contract::digest::fake("ad")}, "steps": 10, "chatFormat": "llama3"});
    let gguf = json!([{"quantization": "Q4_K_M", "uri": "runs/ai/fw-llama/gguf/fw-llama-Q4_K_M.gguf", "digest": crate::contract::digest::fake("new"), "sizeBytes": 4}]);
    let evaluation = json!({"passed": false, "failures": ["adapter eval loss 9.1000 is above the base model's 1.4000 by more than 0 (the run diverged)"],
                            "base": {"loss": 1.4}, "adapter": {"loss": 9.1}});
    set_job_status(
        &fake,
        JOB1,
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    fake.insert(pod(
        "p1",
        "fw-llama-attempt-1",
        json!({"phase": "Succeeded",
        "initContainerStatuses": [terminated("train", 0, "Completed", &train.to_string()),
                                  terminated("quantize", 0, "Completed", &json!({"gguf": gguf}).to_string())],
        "containerStatuses": [terminated("evaluate", 0, "Completed", &evaluation.to_string())]}),
    ));
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let status = status_at(&fake, TR);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["artifacts"]["gguf"], gguf, "the new files are recorded");
    assert_eq!(status["passed"]["gguf"], earlier, "servings keep the files that passed");
    assert_eq!(condition(&status, "Stalled")["reason"], "GateFailed");
    assert_eq!(condition(&status, "Evaluated")["status"], "False");
    assert!(
        condition(&status, "Evaluated")["message"]
            .as_str()
            .unwrap()
            .contains("the run diverged"),
        "{status:#}"
    );
}

#[tokio::test]
async fn failed_job_stalls_with_the_pods_reason() {
    let fake = FakeApiServer::new();
    fake.insert(run_json("Retain"));
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path(), 1);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    set_job_status(
        &fake,
        JOB1,
        json!({"failed": 4, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    fake.insert(pod(
        "p1",
        "fw-llama-attempt-1",
        json!({"phase": "Failed",
        "initContainerStatuses": [terminated("train", 137, "OOMKilled", "")]}),
    ));
    fake.take_requests();
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    let event = requests
        .iter()
        .find(|r| r.method == "POST")
        .and_then(|r| r.body.clone())
        .expect("event");
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("Failed"))
    );
    let status = status_at(&fake, TR);
    let stalled = condition(&status, "Stalled");
    assert_eq!(
        (stalled["status"].as_str(), stalled["reason"].as_str()),
        (Some("True"), Some("JobFailed"))
    );
    assert_eq!(stalled["message"], "train: OOMKilled (exit code 137): ");
    assert_eq!(condition(&status, "Ready")["status"], "False");
}

#[tokio::test]
async fn a_retraining_change_starts_a_new_attempt_and_stops_the_old_one() {
    let fake = FakeApiServer::new();
    fake.insert(run_json("Retain"));
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path(), 1);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;

    // Placement is not a training input: same attempt, the Job is re-applied in place.
    let mut tr = fake.get(TR).expect("run");
    tr["spec"]["resources"]["priorityClassName"] = json!("training-high");
    fake.insert(tr);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert_eq!(status_at(&fake, TR)["attempt"], 1);

    // The learning rate is: attempt 2 gets its own ConfigMap and Job; attempt 1's Job is deleted.
    let mut tr = fake.get(TR).expect("run");
    tr["spec"]["hyperparameters"] = json!({"learningRate": 0.0001});
    tr["metadata"]["generation"] = json!(2);
    fake.insert(tr);
    fake.take_requests();
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    let w = writes(&requests);
    assert_eq!(w[0], format!("DELETE {JOB1}"));
    assert!(
        w.contains(&format!(
            "PATCH /apis/batch/v1/namespaces/ai/jobs/fw-llama-attempt-2{APPLY}"
        )),
        "{w:?}"
    );
    assert!(fake.get(JOB1).is_none());
    let status = status_at(&fake, TR);
    assert_eq!(
        (status["attempt"].as_u64(), status["observedGeneration"].as_i64()),
        (Some(2), Some(2))
    );
}

#[tokio::test]
async fn deletion_with_and_without_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("runs/ai/fw-llama/checkpoints");
    std::fs::create_dir_all(&folder).expect("mkdir");

    let fake = FakeApiServer::new();
    let mut obj = run_json("Retain");
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-20T00:00:00Z");
    obj["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    fake.insert(obj);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx(&fake, dir.path(), 1), reconcile).await;
    assert!(fake.take_requests().is_empty());
    assert!(folder.exists(), "Retain keeps checkpoints");

    let fake = FakeApiServer::new();
    fake.insert(run_json("Delete"));
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let ctx = ctx(&fake, dir.path(), 1);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    let requests = fake.take_requests();
    assert_eq!(calls(&requests[..1]), [format!("PATCH {TR}")]);
    assert_eq!(
        requests[0].body.as_ref().map(|b| b["metadata"]["finalizers"].clone()),
        Some(json!(["ai.fireweave.io/artifact-cleanup"]))
    );
    let mut stored = fake.get(TR).expect("run");
    stored["metadata"]["deletionTimestamp"] = json!("2026-01-20T00:00:00Z");
    fake.insert(stored);
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert!(
        !dir.path().join("runs/ai/fw-llama").exists(),
        "Delete removes the run's files"
    );
    let requests = fake.take_requests();
    assert_eq!(calls(&requests), [format!("PATCH {TR}")]);
    assert_eq!(
        requests[0].body.as_ref().map(|b| b["metadata"]["finalizers"].clone()),
        Some(json!([]))
    );
}

#[tokio::test]
async fn a_malformed_object_fails_alone() {
    let fake = FakeApiServer::new();
    fake.insert(ready_dataset(&crate::contract::digest::fake("d1")));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path(), 1);
    let mut broken: TrainingRun = serde_json::from_value(run_json("Retain")).expect("run");
    broken.metadata.namespace = None;
    let err = reconcile(Arc::new(broken), ctx.clone())
        .await
        .expect_err("no namespace");
    assert_eq!(err.category(), "invalid_object");
    assert!(fake.take_requests().is_empty());
    fake.insert(run_json("Retain"));
    reconcile_at::<TrainingRun, _, _>(&fake, TR, &ctx, reconcile).await;
    assert!(fake.get(JOB1).is_some());
}
