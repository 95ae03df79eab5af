//! Must-show 2 (with 6 along the way): the seed's pipeline, manifests/examples/fireweave-pipeline.yaml, on the
//! tiny test model. Dataset → its Job → the real dataset worker → Ready with stats and digest; the TrainingRun
//! waits for it, then trains and quantizes for real → GGUF files whose digests are in status; the ModelServing
//! becomes a Deployment that the real Deployment controller rolls out on KWOK's nodes → `status.servedModel`.
//! A spec change trains a new attempt, and its GGUF rolls out with `maxUnavailable: 0` while the old digest
//! stays in status until the new ReplicaSet is Ready; a Modelfile template of another chat format is refused and
//! leaves that model serving. Argo CD's health check is asked at every phase.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::cluster::release::{Release, condition, copy_dir, ready, repo, sha256_file};
use crate::cluster::{self, fixtures};
use crate::health::assert_health;

/// The tiny Llama 3.1-shaped checkpoint of the test fixtures (hidden 256: every K-quant applies).
pub const TINY_MODEL: &str = "tiny-llama31";

/// The seed's three resources as a user applies them, changed only where this machine differs from a GPU
/// cluster: the base model is the tiny fixture on the artifact volume (no Hugging Face download), training
/// stops after a few steps, and the serving replicas go to this test's own node (so it can be cordoned).
pub fn seed_pipeline(rel: &Release, max_steps: u32) -> (Value, Value, Value) {
    let text =
        std::fs::read_to_string(repo().join("manifests/examples/fireweave-pipeline.yaml")).expect("seed pipeline");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    let find = |kind: &str| docs.iter().find(|d| d["kind"] == kind).cloned().expect(kind);
    let (dataset, mut run, mut serving) = (find("Dataset"), find("TrainingRun"), find("ModelServing"));
    run["spec"]["baseModel"] = json!({"path": format!("models/{TINY_MODEL}")});
    run["spec"]["hyperparameters"]["maxSteps"] = json!(max_steps);
    serving["spec"]["resources"]["nodeSelector"] = json!({"fireweave.test/node": rel.ns});
    (dataset, run, serving)
}

/// The sample data as the example's header says: `kubectl create configmap fireweave-sample-data --from-file=…`.
pub fn sample_data(rel: &Release) {
    let data = repo().join("examples/data/fireweave");
    rel.kubectl(&[
        "create",
        "configmap",
        "fireweave-sample-data",
        &format!("--from-file={}/", data.display()),
    ]);
}

/// The tiny model on the artifact volume, where the TrainingRun's `baseModel.path` points.
pub fn tiny_model(rel: &Release) {
    copy_dir(
        &fixtures().join(TINY_MODEL),
        &rel.artifacts.join("models").join(TINY_MODEL),
    );
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().expect("name").to_string()
}

/// `Ok` when the object's Ready condition carries `reason`.
pub fn reason(want: &'static str) -> impl Fn(&Value) -> Result<(), String> {
    move |obj| match condition(obj, "Ready") {
        Some(c) if c["reason"] == want => Ok(()),
        Some(c) => Err(format!("Ready reason {} ({})", c["reason"], c["message"])),
        None => Err(format!("no conditions; status {}", obj["status"])),
    }
}

/// Every GGUF file in a TrainingRun's status exists on the volume with that digest and size.
fn check_gguf(rel: &Release, run: &Value) -> Vec<(String, String)> {
    let files = run["status"]["artifacts"]["gguf"]
        .as_array()
        .expect("status.artifacts.gguf");
    let mut out = Vec::new();
    for f in files {
        let uri = f["uri"].as_str().expect("uri");
        let path = rel.artifacts.join(uri.trim_start_matches('/'));
        assert_eq!(
            f["digest"].as_str(),
            Some(sha256_file(&path).as_str()),
            "digest of {}",
            path.display()
        );
        assert_eq!(
            f["sizeBytes"].as_u64(),
            Some(std::fs::metadata(&path).expect("gguf file").len()),
            "size of {}",
            path.display()
        );
        out.push((
            f["quantization"].as_str().expect("quantization").to_string(),
            f["digest"].as_str().unwrap().to_string(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_pipeline_on_the_tiny_model() {
    let cp = cluster::shared();
    let rel = cp.install("pipeline", json!({}));
    let client = rel.client().await;
    let node = rel.add_node();
    sample_data(&rel);
    tiny_model(&rel);
    let (dataset, run, serving) = seed_pipeline(&rel, 4);
    let (ds, tr, ms) = (name(&dataset), name(&run), name(&serving));
    rel.start_operator("fireweave-ai-0").await;

    // The run and the serving come first: they wait, they do not fail.
    rel.apply(&run.to_string()).expect("TrainingRun");
    rel.apply(&serving.to_string()).expect("ModelServing");
    let waiting = rel
        .until(
            &client,
            "TrainingRun",
            &tr,
            "waits for its Dataset",
            reason("WaitingForDataset"),
        )
        .await;
    assert_health(&waiting, "Progressing");
    let waiting = rel
        .until(
            &client,
            "ModelServing",
            &ms,
            "waits for its run",
            reason("WaitingForTrainingRun"),
        )
        .await;
    assert_health(&waiting, "Progressing");
    // What the run reports while it works (printed; which phases a reconcile happens to see is timing).
    let phases: Arc<Mutex<Vec<String>>> = Arc::default();
    let phase_watch = {
        let phases = phases.clone();
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            client.clone(),
            &rel.ns,
            &kube::api::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("ai.fireweave.io", "v1alpha1", "TrainingRun"),
                "trainingruns",
            ),
        );
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(o)) = events.next().await {
                let obj = serde_json::to_value(&o).expect("JSON");
                let s = &obj["status"];
                let message = condition(&obj, "Ready")
                    .map(|c| c["message"].to_string())
                    .unwrap_or_default();
                let line = format!("{} {} {message}", s["phase"], s["progress"]["display"]);
                let mut p = phases.lock().unwrap();
                if p.last() != Some(&line) {
                    p.push(line);
                }
            }
        })
    };
    rel.apply(&dataset.to_string()).expect("Dataset");

    // `kubectl wait`, as a user or a CI pipeline would.
    rel.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("dataset/{ds}"),
        "--timeout=600s",
    ]);
    let built = rel.get(&client, "Dataset", &ds).await.expect("Dataset");
    assert_health(&built, "Healthy");
    let stats = &built["status"]["stats"];
    let kept = stats["kept"].as_u64().expect("stats.kept");
    assert!(
        kept > 100,
        "most of the sample's 164 records survive the seed's filters: {stats}"
    );
    assert_eq!(
        stats["train"].as_u64().unwrap() + stats["eval"].as_u64().unwrap(),
        kept,
        "{stats}"
    );
    let artifact = &built["status"]["artifact"];
    assert!(
        artifact["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")),
        "{artifact}"
    );
    let folder = rel.artifacts.join(artifact["uri"].as_str().expect("artifact uri"));
    assert!(
        folder.is_dir(),
        "the dataset artifact {} is on the volume",
        folder.display()
    );

    rel.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("trainingrun/{tr}"),
        "--timeout=900s",
    ]);
    let trained = rel.get(&client, "TrainingRun", &tr).await.expect("TrainingRun");
    assert_health(&trained, "Healthy");
    assert_eq!(trained["status"]["phase"], "Succeeded", "{}", trained["status"]);
    let gguf = check_gguf(&rel, &trained);
    let mut kinds: Vec<&str> = gguf.iter().map(|(q, _)| q.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["Q4_K_M", "Q5_K_M", "Q8_0"], "the seed's three exports");
    let q4 = gguf
        .iter()
        .find(|(q, _)| q == "Q4_K_M")
        .map(|(_, d)| d.clone())
        .expect("Q4_K_M");

    phase_watch.abort();
    eprintln!(
        "TrainingRun {tr} as it went (phase, progress, message):\n  {}",
        phases.lock().unwrap().join("\n  ")
    );
    rel.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("modelserving/{ms}"),
        "--timeout=600s",
    ]);
    let served = rel.get(&client, "ModelServing", &ms).await.expect("ModelServing");
    assert_health(&served, "Healthy");
    assert_eq!(
        served["status"]["servedModel"]["digest"],
        json!(q4),
        "{}",
        served["status"]
    );
    rel.kubectl(&[
        "wait",
        "--for=condition=Available",
        &format!("deployment/{ms}"),
        "--timeout=300s",
    ]);
    assert!(
        rel.get(&client, "Service", &ms).await.is_some(),
        "the Service in front of the API"
    );
    assert!(
        rel.get(&client, "NetworkPolicy", &ms).await.is_some(),
        "allowedClients became a NetworkPolicy"
    );

    // A new GGUF: a spec change trains attempt 2. The serving node is cordoned first, so the new ReplicaSet's
    // Pods cannot start and the state in between is there to be read, not raced.
    let replicas = serving["spec"]["replicas"].as_i64().expect("replicas");
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), &rel.ns);
        let config = watcher::Config::default().fields(&format!("metadata.name={ms}"));
        tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().applied_objects().boxed();
            while let Some(Ok(d)) = events.next().await {
                seen.lock()
                    .unwrap()
                    .push(serde_json::to_value(d.status).expect("status"));
            }
        })
    };
    rel.cordon(&node, true);
    rel.merge_patch(
        "trainingrun",
        &tr,
        r#"{"spec":{"hyperparameters":{"learningRate":0.0001}}}"#,
    );
    let retrained = rel
        .until(&client, "TrainingRun", &tr, "attempt 2 succeeded", |o| {
            ready(o)?;
            (o["status"]["attempt"] == 2)
                .then_some(())
                .ok_or(format!("attempt {}", o["status"]["attempt"]))
        })
        .await;
    let new_q4 = check_gguf(&rel, &retrained)
        .into_iter()
        .find(|(q, _)| q == "Q4_K_M")
        .map(|(_, d)| d)
        .expect("Q4_K_M");
    assert_ne!(new_q4, q4, "attempt 2 trained with another learning rate");
    let rolling = rel
        .until(&client, "ModelServing", &ms, "rolls out the new GGUF", |o| {
            (o["status"]["phase"] == "RollingOut")
                .then_some(())
                .ok_or(format!("phase {}", o["status"]["phase"]))
        })
        .await;
    assert_eq!(
        rolling["status"]["servedModel"]["digest"],
        json!(q4),
        "the old digest stays while the new Pods are not Ready"
    );
    assert_health(&rolling, "Progressing");
    let deployment = rel
        .until(&client, "Deployment", &ms, "runs the new template", |d| {
            let digest = &d["spec"]["template"]["metadata"]["annotations"]["ai.fireweave.io/model-digest"];
            (*digest == json!(new_q4))
                .then_some(())
                .ok_or(format!("template digest {digest}"))
        })
        .await;
    assert_eq!(
        deployment["status"]["availableReplicas"],
        json!(replicas),
        "old replicas keep serving: {}",
        deployment["status"]
    );
    rel.cordon(&node, false);

    let rolled = rel
        .until(&client, "ModelServing", &ms, "serves the new GGUF", |o| {
            ready(o)?;
            (o["status"]["servedModel"]["digest"] == json!(new_q4))
                .then_some(())
                .ok_or(format!("serves {}", o["status"]["servedModel"]))
        })
        .await;
    assert_health(&rolled, "Healthy");
    rel.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("modelserving/{ms}"),
        "--timeout=60s",
    ]);
    watch.abort();
    // maxUnavailable 0, as the Deployment controller executed it: no status it wrote during the rollout had
    // fewer available replicas than asked for.
    let statuses = seen.lock().unwrap().clone();
    let during: Vec<&Value> = statuses
        .iter()
        .skip_while(|s| s["availableReplicas"] != json!(replicas))
        .collect();
    assert!(during.len() > 2, "the watch saw the rollout: {statuses:?}");
    for s in &during {
        assert!(
            s["availableReplicas"].as_i64().unwrap_or(0) >= replicas,
            "a replica went away before its successor was Ready: {s}"
        );
    }
    assert!(
        during.iter().any(|s| s["replicas"].as_i64().unwrap_or(0) > replicas),
        "the rollout surged"
    );

    a_template_of_another_format_is_refused(&rel, &client, &ms, &new_q4).await;
    rel.assert_no_forbidden();
}

/// A Modelfile template of another chat format than the trained one (the tiny model is Llama 3, the template
/// ChatML's) stalls the ModelServing, naming the field, and leaves the Deployment and the model that serves
/// (`digest`) as they were; unset again, the ModelServing is Ready as before. (A run that fails its evaluation
/// gate: failures.rs.)
async fn a_template_of_another_format_is_refused(rel: &Release, client: &kube::Client, ms: &str, digest: &str) {
    let chatml = fireweave_ai::chat::ChatFormat::Chatml.ollama_template();
    rel.merge_patch(
        "modelserving",
        ms,
        &json!({"spec": {"modelfile": {"template": chatml}}}).to_string(),
    );
    let refused = rel
        .until(
            client,
            "ModelServing",
            ms,
            "refuses a template of another format",
            |o| {
                reason("InvalidSpec")(o)?;
                (o["status"]["observedGeneration"] == o["metadata"]["generation"])
                    .then_some(())
                    .ok_or("an older generation".to_string())
            },
        )
        .await;
    let message = condition(&refused, "Ready").expect("Ready")["message"].to_string();
    assert!(
        message.contains("spec.modelfile.template: the model was trained in the llama3 chat format and this template is a chatml template"),
        "{message}"
    );
    assert_eq!(
        refused["status"]["servedModel"]["digest"],
        json!(digest),
        "{}",
        refused["status"]
    );
    assert_health(&refused, "Degraded");
    let deployment = rel.get(client, "Deployment", ms).await.expect("Deployment");
    assert_eq!(
        deployment_digest(&deployment),
        json!(digest),
        "the Deployment was left as it was"
    );
    rel.merge_patch("modelserving", ms, r#"{"spec":{"modelfile":{"template":null}}}"#);
    let served = rel
        .until(
            client,
            "ModelServing",
            ms,
            "serves again with the template unset",
            ready,
        )
        .await;
    assert_eq!(served["status"]["servedModel"]["digest"], json!(digest));
}

/// The model digest a Deployment's Pod template runs.
pub fn deployment_digest(d: &Value) -> Value {
    d["spec"]["template"]["metadata"]["annotations"]["ai.fireweave.io/model-digest"].clone()
}
