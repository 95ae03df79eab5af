use std::sync::Arc;

use serde_json::{Value, json};

use super::build::job_name;
use super::reconcile::reconcile;
use crate::api::Dataset;
use crate::controller::config::Settings;
use crate::controller::context::Context;
use crate::controller::fake_api::{FakeApiServer, Recorded, calls};

const DS: &str = "/apis/ai.fireweave.io/v1alpha1/namespaces/ai/datasets/fw";

fn dataset_json(retention: &str) -> Value {
    json!({
        "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset",
        "metadata": {"name": "fw", "namespace": "ai", "uid": "uid-ds", "generation": 1},
        "spec": {"sources": [{"path": "examples/data/fireweave"}], "artifactRetention": retention}
    })
}

fn ctx(fake: &FakeApiServer, mount: &std::path::Path) -> Arc<Context> {
    let mut settings = Settings::example();
    settings.artifact_mount = mount.to_path_buf();
    Arc::new(Context::new(fake.client(), settings))
}

async fn reconcile_stored(fake: &FakeApiServer, ctx: &Arc<Context>) {
    let ds: Dataset = serde_json::from_value(fake.get(DS).expect("stored")).expect("Dataset");
    reconcile(Arc::new(ds), ctx.clone()).await.expect("reconcile succeeds");
}

fn job_path() -> String {
    let ds: Dataset = serde_json::from_value(dataset_json("Retain")).expect("Dataset");
    format!("/apis/batch/v1/namespaces/ai/jobs/{}", job_name(&ds))
}

#[tokio::test]
async fn create_then_nothing_changed_writes_nothing() {
    let fake = FakeApiServer::new();
    fake.insert(dataset_json("Retain"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path());
    let ds: Dataset = serde_json::from_value(dataset_json("Retain")).expect("Dataset");
    let job = job_name(&ds);

    reconcile_stored(&fake, &ctx).await;
    let requests = fake.take_requests();
    let apply = "?&force=true&fieldManager=fireweave-ai-operator";
    assert_eq!(
        calls(&requests),
        [
            format!("GET /api/v1/namespaces/ai/configmaps/{job}"),
            format!("PATCH /api/v1/namespaces/ai/configmaps/{job}{apply}"),
            format!("GET /apis/batch/v1/namespaces/ai/jobs/{job}"),
            format!("PATCH /apis/batch/v1/namespaces/ai/jobs/{job}{apply}"),
            format!("GET /api/v1/namespaces/ai/pods?&labelSelector=job-name%3D{job}"),
            // Pending is no step's end: no Event.
            format!("PATCH {DS}/status{apply}"),
        ]
    );
    // Bodies are exactly the builders' objects and the new status.
    let cm = serde_json::to_value(super::build::config_map(&ds)).expect("cm");
    assert_eq!(requests[1].body.as_ref(), Some(&cm));
    let job_body = serde_json::to_value(super::build::job(&ds, &ctx.settings)).expect("job");
    assert_eq!(requests[3].body.as_ref(), Some(&job_body));
    let status = &requests[5].body.as_ref().expect("status body")["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["jobName"], job.as_str());
    let reconciling = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Reconciling");
    assert_eq!(
        reconciling.map(|c| (c["status"].clone(), c["reason"].clone())),
        Some((json!("True"), json!("JobPending")))
    );

    reconcile_stored(&fake, &ctx).await;
    let again = fake.take_requests();
    assert!(
        again.iter().all(|r| r.method == "GET"),
        "second reconcile wrote: {:?}",
        calls(&again)
    );
}

fn pod(job: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("{job}-x"), "namespace": "ai", "labels": {"job-name": job}}, "status": status})
}

#[tokio::test]
async fn succeeded_job_puts_artifact_and_stats_into_status() {
    let fake = FakeApiServer::new();
    fake.insert(dataset_json("Retain"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path());
    reconcile_stored(&fake, &ctx).await;
    let job_path = job_path();
    let job = job_path.rsplit('/').next().expect("name").to_string();
    let mut stored = fake.get(&job_path).expect("job created");
    stored["status"] = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    fake.insert(stored);
    let result = json!({"artifact": {"uri": "datasets/ai/fw/sha256-9f", "digest": crate::contract::digest::fake("9f")},
                        "stats": {"input": 120, "valid": 118, "rejected": 20, "duplicates": 4, "kept": 94, "train": 85, "eval": 9,
                                  "scoreHistogram": [{"bucket": "50-59", "count": 30}], "topics": [{"name": "fireweave", "passed": 94, "total": 118}]}});
    fake.insert(pod(&job, json!({"phase": "Succeeded", "containerStatuses": [{"name": "dataset", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": result.to_string()}}}]})));
    fake.take_requests();

    reconcile_stored(&fake, &ctx).await;
    let requests = fake.take_requests();
    let writes: Vec<&Recorded> = requests.iter().filter(|r| r.method != "GET").collect();
    assert_eq!(
        writes.len(),
        2,
        "only the status and an Event are written: {:?}",
        calls(&requests)
    );
    assert_eq!(
        writes[1].body.as_ref().map(|e| e["reason"].clone()),
        Some(json!("Succeeded"))
    );
    let status = &writes[0].body.as_ref().expect("body")["status"];
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["artifact"], result["artifact"]);
    assert_eq!(status["stats"], result["stats"]);
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned();
    assert_eq!(
        ready.map(|c| c["message"].clone()),
        Some(json!("kept 94 of 120 examples (85 train, 9 eval)"))
    );
}

#[tokio::test]
async fn failed_job_stalls_with_the_pods_reason() {
    let fake = FakeApiServer::new();
    fake.insert(dataset_json("Retain"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path());
    reconcile_stored(&fake, &ctx).await;
    let job_path = job_path();
    let job = job_path.rsplit('/').next().expect("name").to_string();
    let mut stored = fake.get(&job_path).expect("job created");
    stored["status"] =
        json!({"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]});
    fake.insert(stored);
    fake.insert(pod(&job, json!({"phase": "Failed", "containerStatuses": [{"name": "dataset", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 2, "reason": "Error", "message": "error: source 0: examples/data/fireweave: no such file or directory"}}}]})));
    reconcile_stored(&fake, &ctx).await;
    let stored = fake.get(DS).expect("dataset");
    let stalled = stored["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Stalled")
        .cloned()
        .expect("Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "JobFailed");
    assert_eq!(
        stalled["message"],
        "dataset: Error (exit code 2): error: source 0: examples/data/fireweave: no such file or directory"
    );
    assert_eq!(stored["status"]["phase"], "Failed");
}

#[tokio::test]
async fn deletion_with_and_without_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("datasets/ai/fw/sha256-1");
    std::fs::create_dir_all(&folder).expect("mkdir");

    // Retain: no finalizer is ever added, deletion needs nothing from us and the files stay.
    let fake = FakeApiServer::new();
    let mut obj = dataset_json("Retain");
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-20T00:00:00Z");
    obj["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    fake.insert(obj);
    reconcile_stored(&fake, &ctx(&fake, dir.path())).await;
    assert!(fake.take_requests().is_empty());
    assert!(folder.exists());

    // Delete: the first reconcile adds the finalizer; deleting removes the files, then the finalizer.
    let fake = FakeApiServer::new();
    fake.insert(dataset_json("Delete"));
    let ctx = ctx(&fake, dir.path());
    reconcile_stored(&fake, &ctx).await;
    let requests = fake.take_requests();
    assert_eq!(requests[0].method, "PATCH");
    assert_eq!(requests[0].path, DS);
    assert_eq!(
        requests[0].body,
        Some(json!({"metadata": {"finalizers": ["ai.fireweave.io/artifact-cleanup"], "resourceVersion": "1"}}))
    );
    let mut stored = fake.get(DS).expect("dataset");
    stored["metadata"]["deletionTimestamp"] = json!("2026-01-20T00:00:00Z");
    let rv = stored["metadata"]["resourceVersion"].clone();
    fake.insert(stored);
    fake.take_requests();
    reconcile_stored(&fake, &ctx).await;
    assert!(!dir.path().join("datasets/ai/fw").exists(), "artifacts removed");
    let requests = fake.take_requests();
    assert_eq!(calls(&requests), [format!("PATCH {DS}")]);
    let _ = rv;
    assert_eq!(
        requests[0].body.as_ref().map(|b| b["metadata"]["finalizers"].clone()),
        Some(json!([]))
    );
}

#[tokio::test]
async fn a_malformed_object_fails_alone() {
    let fake = FakeApiServer::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ctx(&fake, dir.path());
    // No namespace: an error for this object only; the next one reconciles normally.
    let mut broken: Dataset = serde_json::from_value(dataset_json("Retain")).expect("Dataset");
    broken.metadata.namespace = None;
    let err = reconcile(Arc::new(broken), ctx.clone())
        .await
        .expect_err("no namespace");
    assert_eq!(err.category(), "invalid_object");
    fake.insert(dataset_json("Retain"));
    reconcile_stored(&fake, &ctx).await;
    assert!(fake.get(&job_path()).is_some());
}
