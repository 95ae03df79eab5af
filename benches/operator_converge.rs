//! Operator benchmark: 1,000 TrainingRuns and 1,000 ModelServings converge against the in-memory API server.
//!
//! Each round reconciles every TrainingRun, then every ModelServing (16 at a time, as the controller runtime
//! would run them concurrently), then plays the cluster's part: Jobs complete with the workers' results in
//! their Pods' termination messages, Deployments report their new template Ready. Rounds repeat until every
//! run is `Succeeded` and every serving `Serving`, plus one more round that must write nothing.
//! The API server runs in a child process (this binary with `--serve`) over HTTP on 127.0.0.1, so the peak RSS
//! printed is the operator side's alone: its client, reconciles and a per-round list of every resource (what the
//! controller runtime's watch caches hold). Prints reconcile latency p50/p99, time to converge and peak RSS.
//!
//! `cargo bench --no-default-features --bench operator_converge [-- N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::BufRead;

use fireweave_ai::api::{ModelServing, TrainingRun};
use fireweave_ai::controller::config::Settings;
use fireweave_ai::controller::context::Context;
use fireweave_ai::controller::fake_api::FakeApiServer;
use fireweave_ai::controller::{model_serving, training_run};
use futures::StreamExt;
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;
const NAMESPACES: usize = 10;

fn ns(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn seed(fake: &FakeApiServer, n: usize) {
    for k in 0..NAMESPACES {
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "fw", "namespace": format!("team-{k}"), "uid": format!("ds-{k}"), "generation": 1},
            "spec": {"sources": [{"path": "examples/data/fireweave"}]},
            "status": {"phase": "Succeeded", "artifact": {"uri": "datasets/fw/sha256-d", "digest": fireweave_ai::contract::digest::fake("d")},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }));
    }
    for i in 0..n {
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": format!("run-{i}"), "namespace": ns(i), "uid": format!("tr-{i}"), "generation": 1},
            "spec": {"baseModel": {"path": "models/llama-3.1-8b-instruct"}, "datasetRef": {"name": "fw"},
                     "resources": {"gpus": 1}}
        }));
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing",
            "metadata": {"name": format!("serve-{i}"), "namespace": ns(i), "uid": format!("ms-{i}"), "generation": 1},
            "spec": {"model": {"trainingRunRef": {"name": format!("run-{i}")}}, "replicas": 2,
                     "allowedClients": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}]}
        }));
    }
}

fn terminated(name: &str, message: &Value) -> Value {
    json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
           "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message.to_string()}}})
}

/// The cluster's side of a round: finish every Job and settle every Deployment the operator wrote.
fn play_cluster(fake: &FakeApiServer, n: usize) {
    for i in 0..n {
        let (ns, run) = (ns(i), format!("run-{i}"));
        let job_path = format!("/apis/batch/v1/namespaces/{ns}/jobs/{run}-attempt-1");
        if let Some(mut job) = fake.get(&job_path)
            && job["status"].is_null()
        {
            job["status"] = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
            fake.insert(job);
            let train = json!({"adapter": {"uri": format!("runs/{ns}/{run}/adapter"), "digest": fireweave_ai::contract::digest::fake("a")},
                               "merged": {"uri": format!("runs/{ns}/{run}/merged"), "digest": fireweave_ai::contract::digest::fake("m")},
                               "finalLoss": 0.9, "evalLoss": 1.05, "steps": 750, "tokens": 1_000_000, "chatFormat": "llama3"});
            let digest = format!("sha256:{i:064x}");
            let gguf = json!({"gguf": [{"quantization": "Q4_K_M", "uri": format!("runs/{ns}/{run}/gguf/{run}-Q4_K_M.gguf"),
                                        "digest": digest, "sizeBytes": 4_920_734_016_u64}]});
            // The evaluate step's result, a passed gate (the step runs after quantize since issue 23's gate).
            let evaluation = json!({"passed": true, "examples": 18, "toolCallExamples": 3, "durationSeconds": 1.0,
                "failures": [], "base": {"loss": 1.3}, "adapter": {"loss": 1.05},
                "gguf": [{"quantization": "Q4_K_M", "digest": digest, "loss": 1.07, "lossIncrease": 0.02, "templateMatch": true}]});
            fake.insert(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{run}-attempt-1-x"), "namespace": ns, "labels": {"job-name": format!("{run}-attempt-1")}},
                "status": {"phase": "Succeeded",
                           "initContainerStatuses": [terminated("train", &train), terminated("quantize", &gguf)],
                           "containerStatuses": [terminated("evaluate", &evaluation)]}}));
        }
        let deploy_path = format!("/apis/apps/v1/namespaces/{ns}/deployments/serve-{i}");
        if let Some(mut d) = fake.get(&deploy_path) {
            let generation = d["metadata"]["generation"].clone();
            if d["status"]["observedGeneration"] != generation {
                d["status"] =
                    json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2});
                fake.insert(d);
            }
        }
    }
}

async fn round<K, F, Fut>(client: &kube::Client, ctx: &Arc<Context>, reconcile: F, latencies: &mut Vec<Duration>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy,
    Fut: std::future::Future<
            Output = Result<kube::runtime::controller::Action, fireweave_ai::controller::context::Error>,
        >,
{
    // One list per namespace stands in for the controller's watch cache.
    let mut objects = Vec::new();
    for k in 0..NAMESPACES {
        let api: kube::Api<K> = kube::Api::namespaced(client.clone(), &format!("team-{k}"));
        objects.extend(
            api.list(&Default::default())
                .await
                .expect("list")
                .items
                .into_iter()
                .map(Arc::new),
        );
    }
    let timings: Vec<Duration> = futures::stream::iter(objects)
        .map(|obj| {
            let ctx = ctx.clone();
            async move {
                let started = Instant::now();
                reconcile(obj, ctx).await.expect("reconcile succeeds");
                started.elapsed()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    latencies.extend(timings);
}

fn count_phase(fake: &FakeApiServer, kind: &str, n: usize, want: &str) -> usize {
    (0..n)
        .filter(|i| {
            let path = format!("/apis/ai.fireweave.io/v1alpha1/namespaces/{}/{kind}-{i}", ns(*i));
            fake.get(&path).is_some_and(|o| o["status"]["phase"] == want)
        })
        .count()
}

/// The child process: the fake API server over HTTP, plus three bench-only routes to play the cluster,
/// count converged objects and report what is stored.
async fn serve(n: usize) {
    let fake = FakeApiServer::new();
    fake.set_recording(false);
    seed(&fake, n);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let fake = fake.clone();
        async move {
            let (method, path, query) = (
                req.method().to_string(),
                req.uri().path().to_string(),
                req.uri().query().unwrap_or("").to_string(),
            );
            let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let body: Option<Value> = if bytes.is_empty() {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let (code, value) = match path.as_str() {
                "/_bench/play" => {
                    play_cluster(&fake, n);
                    (http::StatusCode::OK, json!({}))
                }
                "/_bench/phases" => (
                    http::StatusCode::OK,
                    json!({
                        "succeeded": count_phase(&fake, "trainingruns/run", n, "Succeeded"),
                        "serving": count_phase(&fake, "modelservings/serve", n, "Serving"),
                    }),
                ),
                "/_bench/recording" => {
                    fake.set_recording(query == "on");
                    (
                        http::StatusCode::OK,
                        json!({"writes": fake.take_requests().iter().filter(|r| r.method != "GET").count()}),
                    )
                }
                "/_bench/stored" => (
                    http::StatusCode::OK,
                    json!({"objects": fake.len(), "bytes": fake.stored_bytes()}),
                ),
                _ => fake.respond(&method, &path, &query, body),
            };
            (code, axum::Json(value))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    axum::serve(listener, app).await.expect("serve");
}

async fn bench_get(http: &reqwest::Client, base: &str, route: &str) -> Value {
    http.get(format!("{base}{route}"))
        .send()
        .await
        .expect("bench route")
        .json()
        .await
        .expect("json")
}

/// A `/proc/self/status` figure (`VmHWM:` peak, `VmRSS:` now) in MiB.
fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(f64::NAN) / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.iter().any(|a| a == "--serve") {
        return runtime.block_on(serve(n));
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--serve", &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the API server process");
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("port");
    let base = format!("http://127.0.0.1:{}", port.trim());
    runtime.block_on(async {
        let config = kube::Config::new(base.parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let http = reqwest::Client::new();
        let ctx = Arc::new(Context::new(client.clone(), Settings::example()));
        let (mut tr_lat, mut ms_lat) = (Vec::new(), Vec::new());
        let started = Instant::now();
        let mut rounds = 0;
        let phases = loop {
            rounds += 1;
            round::<TrainingRun, _, _>(&client, &ctx, training_run::reconcile::reconcile, &mut tr_lat).await;
            round::<ModelServing, _, _>(&client, &ctx, model_serving::reconcile::reconcile, &mut ms_lat).await;
            bench_get(&http, &base, "/_bench/play").await;
            let phases = bench_get(&http, &base, "/_bench/phases").await;
            if (phases["succeeded"] == n && phases["serving"] == n) || rounds > 10 {
                break phases;
            }
        };
        let converged = started.elapsed();
        // Figures of a run that never got there would read as a fast one (this bench's made-up worker results
        // once fell behind the Job's steps and it printed 0 of 1,000 as if converged).
        assert!(
            phases["succeeded"] == n && phases["serving"] == n,
            "not converged after {rounds} rounds: {phases}; do the made-up results above match the Job's steps?"
        );
        bench_get(&http, &base, "/_bench/recording?on").await;
        let mut idle = Vec::new();
        round::<TrainingRun, _, _>(&client, &ctx, training_run::reconcile::reconcile, &mut idle).await;
        round::<ModelServing, _, _>(&client, &ctx, model_serving::reconcile::reconcile, &mut idle).await;
        let idle_writes = bench_get(&http, &base, "/_bench/recording?off").await["writes"].clone();
        let stored = bench_get(&http, &base, "/_bench/stored").await;

        println!("operator_converge: {n} TrainingRuns + {n} ModelServings in {NAMESPACES} namespaces, {CONCURRENCY} concurrent reconciles");
        println!(
            "  converged: {}/{n} Succeeded, {}/{n} Serving after {rounds} rounds in {:.2} s (target < 10 s)",
            phases["succeeded"],
            phases["serving"],
            converged.as_secs_f64()
        );
        for (kind, lat) in [("TrainingRun", &mut tr_lat), ("ModelServing", &mut ms_lat)] {
            lat.sort();
            println!(
                "  {kind:<12} reconciles: {:>5}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                lat.len(),
                percentile(lat, 0.50).as_secs_f64() * 1e3,
                percentile(lat, 0.99).as_secs_f64() * 1e3,
                lat.last().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
            );
        }
        println!("  idle round after convergence: {idle_writes} writes (want 0)");
        println!(
            "  cluster state (API server process): {} objects, {:.1} MiB as JSON",
            stored["objects"],
            stored["bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
        );
        println!("  operator-side peak RSS: {:.1} MiB (target < 64 MiB)", rss_mib("VmHWM:"));
    });
    let _ = child.kill();
    let _ = child.wait();
}
