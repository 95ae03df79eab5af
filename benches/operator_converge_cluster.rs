//! Operator benchmark on a real control plane: N TrainingRuns and N ModelServings (default 1,000 each) in 10
//! namespaces converge under kube-apiserver, etcd, kube-controller-manager, kube-scheduler and KWOK — the
//! harness of tests/operator_cluster.rs. The workers are made up (each Job Pod ends at once with results in the
//! contract's format: training 1,000 models is not the point); everything else is real: the operator process
//! with the chart's identity, server-side apply, the Job and Deployment controllers, the scheduler, the
//! garbage collector's owner references, the audit log.
//!
//! The resources are created first; the clock starts when the operator starts and stops when every run is
//! `Succeeded` and every serving `Serving`. Prints: time to converge, reconcile p50/p99 (from the operator's
//! own histogram), the operator's peak RSS, write requests per resource (audit log, by kind of write), and the
//! CPU seconds of kube-apiserver, etcd and the other components over the same span. The in-memory figure
//! (`cargo bench --features fake-api --bench operator_converge`) measures the operator alone.
//!
//! `-- --floor` then measures what the control plane alone needs for the same end state: the children the
//! operator made (ConfigMaps, Services, NetworkPolicies, Deployments, Jobs) are read back, the control plane
//! is started afresh, and the bench applies them itself, as fast as the operator may (32 at a time), and
//! waits until every Job has completed and every Deployment has rolled out. No custom resource, status write,
//! Event or reconcile: what is left is kube-apiserver, etcd, the controllers, the scheduler and KWOK.
//!
//!   export FIREWEAVE_CLUSTER_BIN="$(bash scripts/cluster.sh)"
//!   cargo bench --no-default-features --profile operator --bench operator_converge_cluster [-- N]   # as the image builds it

#[path = "../tests/support/cluster/mod.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cluster::audit::AuditEvent;
use cluster::{ControlPlane, Options};
use fireweave_ai::controller::job_status::{JobOutcome, outcome};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;

const NAMESPACES: usize = 10;

fn team(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

/// `sha256:` of a tag (stands for a file the made-up workers would have written).
fn digest(tag: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(tag.as_bytes())))
}

/// What each made-up worker step reports, in the shape the real steps write to their termination message.
fn worker_result(pod: &k8s_openapi::api::core::v1::Pod, container: &str) -> Value {
    use kube::ResourceExt;
    let ns = pod.namespace().unwrap_or_default();
    let owner = pod
        .labels()
        .get("app.kubernetes.io/instance")
        .cloned()
        .unwrap_or_default();
    let gguf = json!([{"quantization": "Q4_K_M", "uri": format!("runs/{ns}/{owner}/gguf/{owner}-Q4_K_M.gguf"),
                       "digest": digest(&format!("{ns}/{owner}/q4")), "sizeBytes": 4_920_734_016_u64}]);
    match container {
        "dataset" => json!({
            "artifact": {"uri": format!("datasets/{ns}/{owner}/d"), "digest": digest(&format!("{ns}/{owner}/d"))},
            "stats": {"input": 200, "valid": 190, "rejected": 10, "duplicates": 0, "kept": 180, "train": 162, "eval": 18}
        }),
        "train" => json!({
            "adapter": {"uri": format!("runs/{ns}/{owner}/adapter"), "digest": digest(&format!("{ns}/{owner}/a"))},
            "merged": {"uri": format!("runs/{ns}/{owner}/merged"), "digest": digest(&format!("{ns}/{owner}/m"))},
            "finalLoss": 0.91, "evalLoss": 1.05, "steps": 750, "tokens": 1_000_000, "chatFormat": "llama3"
        }),
        "quantize" => json!({"gguf": gguf}),
        "evaluate" => json!({
            "passed": true, "examples": 18, "toolCallExamples": 3, "durationSeconds": 1.0, "failures": [],
            "base": {"loss": 1.3}, "adapter": {"loss": 1.05},
            "gguf": [{"quantization": "Q4_K_M", "digest": gguf[0]["digest"], "loss": 1.07, "lossIncrease": 0.02,
                      "templateMatch": true}]
        }),
        other => panic!("no made-up result for a container named {other}: the Job's steps changed"),
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (get(11) + get(12)) / ticks
}

/// Peak resident set size of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A number of `/proc/<pid>/status` (`RssAnon` and `RssFile` in kB, `Threads`).
fn status_value(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Open sockets of a process (its connections to the API server, its listeners).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// The `q` quantile of a Prometheus histogram (`le` buckets, cumulative counts), interpolated in its bucket.
fn quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with(&format!("{name}_bucket{{"))) {
        let le = line.split("le=\"").nth(1)?.split('"').next()?;
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let key = if bound.is_finite() {
            (bound * 1e9) as u64
        } else {
            u64::MAX
        };
        let entry = buckets.entry(key).or_insert((bound, 0.0));
        entry.1 += count;
    }
    let total = buckets.values().last()?.1;
    let target = q * total;
    let mut previous = (0.0, 0.0);
    for (bound, count) in buckets.values() {
        if *count >= target {
            if !bound.is_finite() {
                return Some(previous.0);
            }
            let share = if count - previous.1 > 0.0 {
                (target - previous.1) / (count - previous.1)
            } else {
                1.0
            };
            return Some(previous.0 + share * (bound - previous.0));
        }
        previous = (*bound, *count);
    }
    None
}

fn main() {
    let floor = std::env::args().any(|a| a == "--floor");
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("operator_converge_cluster");
    let _ = std::fs::remove_dir_all(&dir);
    // Rate limits high enough that the controllers, not their client throttles, set the pace.
    let options = Options {
        qps: 1000,
        kwok_parallelism: 16,
    };
    let cp: &'static ControlPlane = Box::leak(Box::new(ControlPlane::start(&dir, &options, cluster::images())));
    println!(
        "control plane: kube-apiserver /readyz after {:.1} s, all components and nodes ready after {:.1} s",
        cp.to_readyz.as_secs_f64(),
        cp.to_ready.as_secs_f64()
    );
    cluster::install_crds(cp);
    let children = runtime.block_on(bench(cp, n, floor));
    cp.stop();
    if floor {
        let dir = dir.with_file_name("operator_converge_cluster_floor");
        let _ = std::fs::remove_dir_all(&dir);
        let cp: &'static ControlPlane = Box::leak(Box::new(ControlPlane::start(&dir, &options, cluster::images())));
        cluster::install_crds(cp);
        runtime.block_on(control_plane_floor(cp, children));
        cp.stop();
    }
}

/// Namespaces, the chart (its worker ServiceAccounts and RBAC; the operator is not started), nodes with room
/// for every Pod, an artifact claim in each namespace, and made-up workers for the Job Pods.
fn prepare(cp: &'static ControlPlane) -> (Vec<String>, cluster::release::Release) {
    let teams: Vec<String> = (0..NAMESPACES).map(team).collect();
    for t in &teams {
        cp.kubectl(&["create", "namespace", t]);
    }
    // One operator watching the ten namespaces, with the chart's default (cluster-wide) RBAC.
    let rel = cp.install_in(
        "fireweave",
        json!({"watchNamespaces": teams, "crds": {"install": false},
               "operator": {"logJson": true, "logLevel": "warn"}}),
        json!({}),
    );
    // Room for the Pods: 3,000 of them (a Job Pod per run, two replicas per serving), a GPU per run.
    for i in 0..4 {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("bench-{i}"), "labels": {"kubernetes.io/hostname": format!("bench-{i}")}},
            "status": {"capacity": {"cpu": "4000", "memory": "16Ti", "pods": "2000", "nvidia.com/gpu": "1000"},
                       "allocatable": {"cpu": "4000", "memory": "16Ti", "pods": "2000", "nvidia.com/gpu": "1000"}}});
        cp.kubectl_with(&["create", "-f", "-"], Some(&node.to_string()))
            .expect("node");
    }
    // The chart makes the artifact claim in its own namespace only; each watched namespace needs one for its
    // Job Pods (what an installation watching other namespaces must provide), all on the same folder here.
    let mut objects = Vec::new();
    let claim = "fireweave-ai-artifacts";
    for t in &teams {
        objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("{t}-artifacts")},
            "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": rel.artifacts.display().to_string()},
                     "claimRef": {"namespace": t, "name": claim}}}));
        objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": t},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "200Gi"}}, "storageClassName": ""}}));
        let fake: cluster::kubelet::FakeRun = Arc::new(|pod, c| (0, worker_result(pod, &c.name).to_string()));
        cp.kubelet.fake_workers(t, fake);
    }
    let text: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    cp.kubectl_with(&["apply", "--server-side", "-f", "-"], Some(&text.join("\n")))
        .expect("artifact volumes");
    (teams, rel)
}

async fn bench(cp: &'static ControlPlane, n: usize, floor: bool) -> Vec<Value> {
    let (teams, rel) = prepare(cp);
    // The worker ServiceAccount the chart makes in each watched namespace is there; the data is made up.
    let mut objects: Vec<Value> = teams
        .iter()
        .map(|t| {
            json!({"apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset",
                   "metadata": {"name": "fw", "namespace": t}, "spec": {"sources": [{"path": "data/fireweave"}]}})
        })
        .collect();
    for i in 0..n {
        let ns = team(i);
        objects.push(json!({"apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": format!("run-{i}"), "namespace": ns},
            "spec": {"baseModel": {"path": "models/llama-3.1-8b-instruct"}, "datasetRef": {"name": "fw"},
                     "resources": {"gpus": 1}}}));
        objects.push(json!({"apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing",
            "metadata": {"name": format!("serve-{i}"), "namespace": ns},
            "spec": {"model": {"trainingRunRef": {"name": format!("run-{i}")}}, "replicas": 2,
                     "allowedClients": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}]}}));
    }
    let created = Instant::now();
    for chunk in objects.chunks(500) {
        let text: Vec<String> = chunk.iter().map(|o| o.to_string()).collect();
        cp.kubectl_with(&["apply", "--server-side", "-f", "-"], Some(&text.join("\n")))
            .expect("create the resources");
    }
    println!(
        "created {} resources in {:.1} s",
        objects.len(),
        created.elapsed().as_secs_f64()
    );

    let pids: BTreeMap<String, u32> = cp.pids().into_iter().collect();
    let cpu_before: BTreeMap<String, f64> = pids.iter().map(|(k, p)| (k.clone(), cpu_seconds(*p))).collect();
    let audit_before = cp_audit(cp).len();
    let started = Instant::now();
    rel.start_operator("fireweave-ai-0").await;
    let operator_pid = rel.with_operator("fireweave-ai-0", |o| o.daemon.pid());
    let client = cp.client().await;
    // The phases as the API server holds them, from one watch per kind: polling with a list of all 2,000
    // objects every half second spent API server CPU on the bench itself, slowing what it measures.
    let watched = |kind: &'static str| {
        let resource = cluster::release::resource_of(kind);
        let api = kube::Api::<kube::api::DynamicObject>::all_with(client.clone(), &resource);
        watch(api, resource, kube::runtime::watcher::Config::default())
    };
    let ((run_store, run_watch), (serving_store, serving_watch)) = (watched("TrainingRun"), watched("ModelServing"));
    let count = |store: &kube::runtime::reflector::Store<kube::api::DynamicObject>, phase: &str| {
        store
            .state()
            .iter()
            .filter(|o| o.data["status"]["phase"] == phase)
            .count()
    };
    let mut last_report = Instant::now();
    let converged = loop {
        let (runs, servings) = (count(&run_store, "Succeeded"), count(&serving_store, "Serving"));
        if runs == n && servings == n {
            break started.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!(
                "  {:>5.0} s: {runs}/{n} runs Succeeded, {servings}/{n} servings Serving",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        cp.assert_running();
        rel.with_operator("fireweave-ai-0", |o| o.daemon.assert_running());
        if started.elapsed() > Duration::from_secs(3600) {
            panic!("not converged after an hour: {runs}/{n} runs, {servings}/{n} servings");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Stopped before the control plane goes: a watch left to retry against a dead API server kept one core busy
    // after the figures were printed, and the next run measured on the one core left.
    run_watch.abort();
    serving_watch.abort();
    let cpu_after: BTreeMap<String, f64> = pids.iter().map(|(k, p)| (k.clone(), cpu_seconds(*p))).collect();
    let rss_after: BTreeMap<String, f64> = pids.iter().map(|(k, p)| (k.clone(), peak_rss_mib(*p))).collect();
    let metrics = rel.metrics("fireweave-ai-0").await;
    let operator_requests: Vec<AuditEvent> = cp_audit(cp)[audit_before..]
        .iter()
        .filter(|e| e.user == rel.operator_user)
        .cloned()
        .collect();
    let writes: Vec<AuditEvent> = operator_requests.iter().filter(|e| e.is_write()).cloned().collect();

    println!(
        "\n{n} TrainingRuns + {n} ModelServings in {NAMESPACES} namespaces (made-up workers, real control plane):"
    );
    println!(
        "  converged in {:.1} s (target < 60 s on 2 cores)",
        converged.as_secs_f64()
    );
    for kind in ["TrainingRun", "ModelServing"] {
        let name = "fireweave_operator_reconcile_duration_seconds";
        let filtered: String = metrics
            .lines()
            .filter(|l| l.contains(&format!("kind=\"{kind}\"")))
            .collect::<Vec<_>>()
            .join("\n");
        println!(
            "  reconcile {kind}: p50 {:.1} ms, p99 {:.1} ms (interpolated in the histogram's buckets)",
            quantile(&filtered, name, 0.5).unwrap_or(f64::NAN) * 1e3,
            quantile(&filtered, name, 0.99).unwrap_or(f64::NAN) * 1e3
        );
    }
    println!(
        "  operator peak RSS {:.1} MiB (target < 64 MiB); at convergence {:.1} MiB anonymous + {:.1} MiB file-backed, {} sockets, {} threads",
        peak_rss_mib(operator_pid),
        status_value(operator_pid, "RssAnon") / 1024.0,
        status_value(operator_pid, "RssFile") / 1024.0,
        sockets(operator_pid),
        status_value(operator_pid, "Threads"),
    );
    let resources = (2 * n + NAMESPACES) as f64;
    println!(
        "  operator writes: {} = {:.2} per resource",
        writes.len(),
        writes.len() as f64 / resources
    );
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for w in &writes {
        let sub = if w.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", w.subresource)
        };
        *by_kind.entry(format!("{} {}{sub}", w.verb, w.resource)).or_insert(0) += 1;
    }
    for (what, count) in &by_kind {
        println!(
            "    {what:<40} {count:>6}  ({:.2} per resource)",
            *count as f64 / resources
        );
    }
    // Reads too: they are most of what the API server spends its CPU on besides the audit log itself.
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    for r in operator_requests.iter().filter(|e| !e.is_write()) {
        *reads.entry(format!("{} {}", r.verb, r.resource)).or_insert(0) += 1;
    }
    println!(
        "  operator reads: {}",
        reads
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, before) in &cpu_before {
        println!(
            "  {name:<24} {:>7.1} CPU s, peak RSS {:>6.0} MiB",
            cpu_after[name] - before,
            rss_after[name]
        );
    }
    println!("  operator                 {:>7.1} CPU s", cpu_seconds(operator_pid));
    if !floor {
        return Vec::new();
    }
    let selector = fireweave_ai::controller::cache::children_selector();
    let listed = cp.kubectl(&[
        "get",
        "configmaps,services,networkpolicies,deployments,jobs",
        "--all-namespaces",
        "-l",
        &selector,
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&listed).expect("kubectl's JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A child as the operator applied it, for another control plane: no status, no owner (the custom resources
/// are not there), nothing the API server or a controller filled in.
fn replayable(mut o: Value) -> Value {
    let meta = o["metadata"].take();
    let mut kept = serde_json::Map::new();
    for field in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = meta.get(field).filter(|v| !v.is_null()) {
            kept.insert(field.to_string(), v.clone());
        }
    }
    if let Some(a) = kept.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("deployment.kubernetes.io/revision");
    }
    o["metadata"] = Value::Object(kept);
    let kind = o["kind"].as_str().unwrap_or("").to_string();
    let Some(obj) = o.as_object_mut() else {
        return o;
    };
    obj.remove("status");
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return o;
    };
    match kind.as_str() {
        "Service" => {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        // The API server makes a Job's selector and its controller-uid labels; a Job that brings them is refused.
        "Job" => {
            spec.remove("selector");
            let labels = spec
                .get_mut("template")
                .and_then(|t| t.pointer_mut("/metadata/labels"))
                .and_then(Value::as_object_mut);
            if let Some(labels) = labels {
                labels.remove("controller-uid");
                labels.remove("batch.kubernetes.io/controller-uid");
            }
        }
        _ => {}
    }
    o
}

/// The control plane alone reaching the end state the operator reached (see the module comment).
async fn control_plane_floor(cp: &'static ControlPlane, children: Vec<Value>) {
    use futures::StreamExt;
    let _ = prepare(cp);
    let client = cp.client().await;
    let api_of = |o: &Value| -> kube::Api<kube::api::DynamicObject> {
        kube::Api::namespaced_with(
            client.clone(),
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            &cluster::release::resource_of(o["kind"].as_str().unwrap_or("")),
        )
    };
    let children: Vec<Value> = children.into_iter().map(replayable).collect();
    let (workloads, first): (Vec<&Value>, Vec<&Value>) = children
        .iter()
        .partition(|o| matches!(o["kind"].as_str(), Some("Job" | "Deployment")));
    let jobs = workloads.iter().filter(|o| o["kind"] == "Job").count();
    let deployments = workloads.len() - jobs;

    let pids: BTreeMap<String, u32> = cp.pids().into_iter().collect();
    let cpu_before: BTreeMap<String, f64> = pids.iter().map(|(k, p)| (k.clone(), cpu_seconds(*p))).collect();
    let started = Instant::now();
    // What a Job or Deployment mounts or is reached by first, as the operator orders them.
    for batch in [first, workloads] {
        futures::stream::iter(batch)
            .map(|o| {
                let api = api_of(o);
                async move {
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    let params = kube::api::PatchParams::apply("fireweave-ai-operator").force();
                    api.patch(name, &params, &kube::api::Patch::Apply(o))
                        .await
                        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", o["kind"]))
                }
            })
            .buffer_unordered(32)
            .for_each(|_| async {})
            .await;
    }
    let created = started.elapsed();
    // Done as the operator judges it: a Job by its outcome, a Deployment by the rollout check a ModelServing waits on.
    let ours =
        || kube::runtime::watcher::Config::default().labels(&fireweave_ai::controller::cache::children_selector());
    let (job_store, job_watch) = watch(kube::Api::<Job>::all(client.clone()), (), ours());
    let (deployment_store, deployment_watch) = watch(kube::Api::<Deployment>::all(client.clone()), (), ours());
    let complete = |j: &Job| outcome(j, &[]) == JobOutcome::Succeeded;
    let rolled_out = |d: &Deployment| {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        fireweave_ai::controller::model_serving::reconcile::rolled_out(d, replicas)
    };
    let converged = loop {
        let finished = job_store.state().iter().filter(|o| complete(o)).count();
        let serving = deployment_store.state().iter().filter(|o| rolled_out(o)).count();
        if finished == jobs && serving == deployments {
            break started.elapsed();
        }
        cp.assert_running();
        if started.elapsed() > Duration::from_secs(3600) {
            panic!("not converged after an hour: {finished}/{jobs} Jobs, {serving}/{deployments} Deployments");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    job_watch.abort();
    deployment_watch.abort();
    let cpu_after: BTreeMap<String, f64> = pids.iter().map(|(k, p)| (k.clone(), cpu_seconds(*p))).collect();
    println!(
        "\nThe control plane alone, to the same end state ({} children applied by the bench, 32 at a time; {jobs} Jobs \
         complete, {deployments} Deployments rolled out):",
        children.len()
    );
    println!(
        "  converged in {:.1} s (applying took {:.1} s)",
        converged.as_secs_f64(),
        created.as_secs_f64()
    );
    for (name, before) in &cpu_before {
        println!("  {name:<24} {:>7.1} CPU s", cpu_after[name] - before);
    }
}

/// A store of every object `api` lists that `config` selects, kept by a watch the caller aborts.
fn watch<K>(
    api: kube::Api<K>,
    dynamic: K::DynamicType,
    config: kube::runtime::watcher::Config,
) -> (kube::runtime::reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let writer = kube::runtime::reflector::store::Writer::new(dynamic);
    let store = writer.as_reader();
    let events = kube::runtime::watcher(api, config).default_backoff();
    let task = tokio::spawn(kube::runtime::reflector(writer, events).for_each(|_| async {}));
    (store, task)
}

fn cp_audit(cp: &ControlPlane) -> Vec<AuditEvent> {
    cluster::audit::events(&cp.audit_log)
}
