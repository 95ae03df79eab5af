//! One test's install of the chart: a namespace, the chart rendered by the Helm engine the chart tests use
//! (`python scripts/chart.py render`) with that namespace as release and watched namespace, everything applied
//! except the operator Deployment, and a PersistentVolume (a host folder) bound to the chart's artifact claim.
//!
//! The operator then runs as that Deployment's Pod would: its container, args and env from the render, its
//! volumes mounted at their paths, and a TokenRequest token for the chart's ServiceAccount — so the API server
//! authorizes it with exactly the chart's Role, and the audit log tells every request it made.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::audit::{self, AuditEvent};
use super::container;
use super::control_plane::{ControlPlane, client_from};
use super::pki::{self, Auth};
use super::process::{Daemon, free_port};

/// The release name every test installs (as in the README's `helm install fireweave-ai`).
pub const RELEASE: &str = "fireweave-ai";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart rendered by Helm's engine: every document as JSON.
pub fn render(namespace: &str, values: &Value) -> Vec<Value> {
    let python = std::env::var_os("FIREWEAVE_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = std::process::Command::new(&python)
        .arg(repo().join("scripts/chart.py"))
        .args(["render", "--namespace", namespace, "--set-json", &values.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        out.status.success(),
        "scripts/chart.py render (needs the venv's helm-python-sdk: source scripts/env.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|v: &Value| v.is_object())
        .collect()
}

fn to_yaml(docs: &[&Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

pub struct Release {
    pub cp: &'static ControlPlane,
    pub ns: String,
    /// This test's folder: the artifact volume, the operators' folders and logs.
    pub dir: PathBuf,
    /// Host folder behind the artifact PersistentVolume.
    pub artifacts: PathBuf,
    /// `system:serviceaccount:<ns>:<chart ServiceAccount>`: the operator's user in the audit log.
    pub operator_user: String,
    deployment: Deployment,
    operators: Mutex<Vec<Operator>>,
    replicas_started: Mutex<u32>,
}

/// A running operator replica.
pub struct Operator {
    pub name: String,
    pub http: String,
    pub daemon: Daemon,
}

impl ControlPlane {
    /// Installs the chart in a fresh namespace `<prefix>-<n>` (watching only that namespace); `values` are
    /// merged over the test defaults.
    pub fn install(&'static self, prefix: &str, values: Value) -> Release {
        static COUNT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut c = COUNT.lock().unwrap();
            *c += 1;
            *c
        };
        let ns = format!("{prefix}-{n}");
        let defaults = json!({
            "watchNamespaces": [ns],
            "rbac": {"scope": "namespace"},
            "crds": {"install": false},
            "operator": {"logJson": false, "logLevel": "info,fireweave_ai=debug"},
        });
        self.install_in(&ns, defaults, values)
    }

    /// Installs the chart as release namespace `ns` with `defaults` and then `values` merged over them
    /// (`watchNamespaces` may name others, which must exist).
    pub fn install_in(&'static self, ns: &str, defaults: Value, values: Value) -> Release {
        let ns = ns.to_string();
        let dir = self.dir.join("tests").join(&ns);
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(&artifacts).expect("artifact folder");
        self.kubectl(&["create", "namespace", &ns]);

        let mut merged = defaults;
        merge(&mut merged, &values);
        let docs = render(&ns, &merged);
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .map(|d| serde_json::from_value::<Deployment>(d.clone()).expect("operator Deployment"))
            .expect("the chart renders the operator Deployment");
        let rest: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "Deployment").collect();
        self.kubectl_with(
            &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
            Some(&to_yaml(&rest)),
        )
        .unwrap_or_else(|e| panic!("applying the chart in {ns}: {e}"));

        let claim = docs
            .iter()
            .find(|d| d["kind"] == "PersistentVolumeClaim")
            .and_then(|d| d["metadata"]["name"].as_str())
            .expect("the chart renders the artifact claim")
            .to_string();
        // What a storage provisioner would do: a volume for this claim, here a folder of the test.
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("{ns}-artifacts")},
            "spec": {
                "capacity": {"storage": "200Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": artifacts.display().to_string(), "type": "Directory"},
                "claimRef": {"namespace": ns, "name": claim},
            }
        });
        self.kubectl_with(&["apply", "--server-side", "-f", "-"], Some(&pv.to_string()))
            .expect("artifact volume");
        self.kubectl(&[
            "wait",
            "-n",
            &ns,
            "--for=jsonpath={.status.phase}=Bound",
            &format!("pvc/{claim}"),
            "--timeout=120s",
        ]);
        let sa = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.service_account_name.clone())
            .expect("the operator Pod names its ServiceAccount");
        Release {
            cp: self,
            operator_user: format!("system:serviceaccount:{ns}:{sa}"),
            ns,
            dir,
            artifacts,
            deployment,
            operators: Mutex::new(Vec::new()),
            replicas_started: Mutex::new(0),
        }
    }
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl Release {
    /// `kubectl -n <ns>` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.ns];
        all.extend_from_slice(args);
        self.cp.kubectl(&all)
    }

    /// `kubectl patch <kind> <name> --type=merge -p <patch>`: a spec change as a user makes it.
    pub fn merge_patch(&self, kind: &str, name: &str, patch: &str) -> String {
        self.kubectl(&["patch", kind, name, "--type=merge", "-p", patch])
    }

    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.cp
            .kubectl_with(&["-n", &self.ns, "apply", "--server-side", "-f", "-"], Some(yaml))
    }

    pub async fn client(&self) -> kube::Client {
        self.cp.client().await
    }

    /// A client with the operator's own identity (a fresh token for the chart's ServiceAccount).
    pub async fn operator_client(&self) -> kube::Client {
        client_from(&self.operator_kubeconfig("probe")).await
    }

    fn operator_kubeconfig(&self, name: &str) -> PathBuf {
        let sa = self.operator_user.rsplit(':').next().unwrap_or_default();
        let token = self.kubectl(&["create", "token", sa, "--duration=2h"]);
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let text = pki::kubeconfig(
            &self.cp.server,
            &self.cp.pki.path("ca.crt"),
            &self.operator_user,
            Auth::Token(token.trim()),
        );
        std::fs::write(&path, text).expect("operator kubeconfig");
        path
    }

    /// Starts one operator replica as the chart's Deployment Pod (`POD_NAME` = `name`).
    pub async fn start_operator(&self, name: &str) -> String {
        *self.replicas_started.lock().unwrap() += 1;
        let kubeconfig = self.operator_kubeconfig(name);
        let template = self
            .deployment
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("Deployment template");
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        let spec: PodSpec = pod.spec.clone().unwrap_or_default();
        let dir = self.dir.join("operators").join(name);
        std::fs::create_dir_all(&dir).expect("operator dir");
        // The Pod's volumes: emptyDirs become folders, the artifact claim its volume's folder.
        let mut volumes = std::collections::HashMap::new();
        for v in spec.volumes.as_deref().unwrap_or_default() {
            let path = if v.persistent_volume_claim.is_some() {
                self.artifacts.clone()
            } else {
                assert!(
                    v.empty_dir.is_some(),
                    "operator volume {} is neither a claim nor an emptyDir",
                    v.name
                );
                let p = dir.join("volumes").join(&v.name);
                std::fs::create_dir_all(&p).expect("emptyDir");
                p
            };
            volumes.insert(v.name.clone(), path);
        }
        let c = spec.containers.first().expect("operator container").clone();
        let mut launch = self
            .cp
            .kubelet
            .launch(&pod, &c, &volumes, &dir)
            .await
            .unwrap_or_else(|e| panic!("operator container: {e}"));
        // Differences from a Pod, both because these processes share the host's network: the metrics port is
        // a free one of 127.0.0.1 instead of the Pod IP's 8080, and the API server is reached through a
        // kubeconfig (TokenRequest token, our CA) instead of the in-cluster Service address.
        launch.own_network = false;
        let http = format!("127.0.0.1:{}", free_port());
        set_env(&mut launch.env, "FIREWEAVE_HTTP_ADDR", &http);
        // The kubeconfig is mounted into the container as the ServiceAccount token would be, with the CA inline:
        // host paths may be hidden in there (the chart's emptyDir on /tmp covers a test folder under /tmp).
        let ca = self.cp.pki.path("ca.crt");
        let inline = std::fs::read_to_string(&kubeconfig)
            .expect("operator kubeconfig")
            .replace(
                &format!("certificate-authority: {}", ca.display()),
                &format!(
                    "certificate-authority-data: {}",
                    base64(&std::fs::read(&ca).expect("ca.crt"))
                ),
            );
        let mounted = dir.join("kubeconfig");
        std::fs::write(&mounted, inline).expect("operator kubeconfig");
        const KUBECONFIG: &str = "/var/run/fireweave-test/kubeconfig";
        launch.mounts.push(super::container::Mount {
            host: mounted,
            path: KUBECONFIG.into(),
            read_only: true,
        });
        set_env(&mut launch.env, "KUBECONFIG", KUBECONFIG);
        // For profiling the operator under the harness (`LD_PRELOAD=…/libheaptrack_preload.so
        // DUMP_HEAPTRACK_OUTPUT=FILE`, `MALLOC_ARENA_MAX=1`): `FIREWEAVE_OPERATOR_ENV="K=V K2=V2"` starts it
        // through `env K=V …`, so that only the operator itself sees them (not unshare and sh before it;
        // heaptrack's preload library traces the first program that loads it and hides itself from children).
        let extra: Vec<String> = std::env::var("FIREWEAVE_OPERATOR_ENV")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !extra.is_empty() {
            launch
                .argv
                .splice(0..0, std::iter::once("/usr/bin/env".to_string()).chain(extra));
        }
        let log = dir.join("operator.log");
        let daemon = Daemon::start(&format!("operator {name}"), container::command(&launch), log);
        self.operators.lock().unwrap().push(Operator {
            name: name.to_string(),
            http: http.clone(),
            daemon,
        });
        http
    }

    /// Runs `f` on the replica named `name`.
    pub fn with_operator<T>(&self, name: &str, f: impl FnOnce(&mut Operator) -> T) -> T {
        let mut ops = self.operators.lock().unwrap();
        let op = ops
            .iter_mut()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("no operator {name}"));
        f(op)
    }

    /// `kill -9` of one replica.
    pub fn kill_operator(&self, name: &str) {
        self.with_operator(name, |o| o.daemon.kill());
    }

    /// SIGTERM (graceful: in-flight reconciles finish, the Lease is released).
    pub fn stop_operator(&self, name: &str) {
        self.with_operator(name, |o| {
            o.daemon.terminate(Duration::from_secs(30));
        });
    }

    /// The operator's /metrics text.
    pub async fn metrics(&self, name: &str) -> String {
        let http = self.with_operator(name, |o| o.http.clone());
        reqwest::get(format!("http://{http}/metrics"))
            .await
            .and_then(|r| r.error_for_status())
            .expect("operator /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The audit log's entries for this test's operator user.
    pub fn audit(&self) -> Vec<AuditEvent> {
        audit::events(&self.cp.audit_log)
            .into_iter()
            .filter(|e| e.user == self.operator_user)
            .collect()
    }

    /// Waits until the operator's last write is `quiet` old (read from the audit log).
    pub async fn settle(&self, quiet: Duration) {
        eventually(super::PATIENCE, "the operator stops writing", || async {
            let last = self.audit().into_iter().filter(|e| e.is_write()).map(|e| e.at).max();
            let Some(last) = last else {
                return Ok(());
            };
            let at: k8s_openapi::jiff::Timestamp = last.parse().map_err(|e| format!("{last}: {e}"))?;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(at);
            if age.as_secs_f64() >= quiet.as_secs_f64() {
                Ok(())
            } else {
                Err(format!("last write {last}"))
            }
        })
        .await
    }

    /// Fails the test when the API server refused any request of the operator (its RBAC rules lack something).
    pub fn assert_no_forbidden(&self) {
        let forbidden: Vec<String> = self
            .audit()
            .iter()
            .filter(|e| e.code == 403)
            .map(|e| e.describe())
            .collect();
        assert!(
            forbidden.is_empty(),
            "the operator made requests its chart RBAC does not allow:\n{}",
            forbidden.join("\n")
        );
    }

    /// The log of replica `name`.
    pub fn operator_log(&self, name: &str) -> PathBuf {
        self.dir.join("operators").join(name).join("operator.log")
    }

    /// Folders of a Job Pod the kubelet ran (its container logs are there).
    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.cp.kubelet.pod_dir(&self.ns, pod)
    }
}

fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

impl Drop for Release {
    fn drop(&mut self) {
        // Operators stop first, then the workers still running for this namespace (both killed by PID).
        let ops = std::mem::take(&mut *self.operators.lock().unwrap_or_else(|p| p.into_inner()));
        drop(ops);
        self.cp.kubelet.stop_namespace(&self.ns);
        // FIREWEAVE_CLUSTER_KEEP=1 keeps a passing test's folders too, to read what its workers did.
        if std::thread::panicking() || std::env::var_os("FIREWEAVE_CLUSTER_KEEP").is_some() {
            eprintln!(
                "\n=== logs kept for namespace {}: {} (operators, artifacts), {} (Job Pods), {} (control plane)\n",
                self.ns,
                self.dir.display(),
                self.cp.kubelet.pod_dir(&self.ns, "").display(),
                self.cp.logs().display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir_all(self.cp.kubelet.pod_dir(&self.ns, ""));
        }
    }
}

/// Polls `check` every 200 ms until it gives `Some`, or panics after `limit` saying what was awaited and what was
/// seen last. Limits are generous: they catch a hang, they are not a measurement.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: still not so after {limit:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The kinds the tests read back, as (apiVersion, kind, plural).
/// The API coordinates of a kind the tests and benches read or write.
pub fn resource_of(kind: &str) -> kube::api::ApiResource {
    let (group, version, plural) = match kind {
        "Dataset" => ("ai.fireweave.io", "v1alpha1", "datasets"),
        "TrainingRun" => ("ai.fireweave.io", "v1alpha1", "trainingruns"),
        "ModelServing" => ("ai.fireweave.io", "v1alpha1", "modelservings"),
        "Job" => ("batch", "v1", "jobs"),
        "Deployment" => ("apps", "v1", "deployments"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "NetworkPolicy" => ("networking.k8s.io", "v1", "networkpolicies"),
        "Lease" => ("coordination.k8s.io", "v1", "leases"),
        "Pod" => ("", "v1", "pods"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Service" => ("", "v1", "services"),
        "Node" => ("", "v1", "nodes"),
        other => panic!("resource_of: add {other}"),
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    kube::api::ApiResource::from_gvk_with_plural(&gvk, plural)
}

impl Release {
    fn dynamic(&self, client: &kube::Client, kind: &str) -> kube::Api<kube::api::DynamicObject> {
        kube::Api::namespaced_with(client.clone(), &self.ns, &resource_of(kind))
    }

    /// The object `kind/name` of this namespace as JSON, `None` when it does not exist.
    pub async fn get(&self, client: &kube::Client, kind: &str, name: &str) -> Option<Value> {
        let found = self
            .dynamic(client, kind)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {kind} {}/{name}: {e}", self.ns));
        found.map(|o| serde_json::to_value(o).expect("object JSON"))
    }

    /// Every `kind` of this namespace (optionally with a label selector) as JSON.
    pub async fn list(&self, client: &kube::Client, kind: &str, labels: Option<&str>) -> Vec<Value> {
        let mut params = kube::api::ListParams::default();
        if let Some(l) = labels {
            params = params.labels(l);
        }
        self.dynamic(client, kind)
            .list(&params)
            .await
            .unwrap_or_else(|e| panic!("list {kind} in {}: {e}", self.ns))
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("object JSON"))
            .collect()
    }

    /// Waits until `kind/name` exists and `test` accepts it; returns it. `test` says what it saw otherwise.
    pub async fn until(
        &self,
        client: &kube::Client,
        kind: &str,
        name: &str,
        what: &str,
        test: impl Fn(&Value) -> Result<(), String>,
    ) -> Value {
        eventually(
            super::PATIENCE,
            &format!("{kind} {}/{name}: {what}", self.ns),
            || async {
                self.cp.assert_running();
                match self.get(client, kind, name).await {
                    Some(obj) => test(&obj).map(|_| obj.clone()),
                    None => Err("does not exist".into()),
                }
            },
        )
        .await
    }
}

/// The condition `type` of an object's status, if any.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `Ok` when the object's `Ready` condition is True for its current generation.
pub fn ready(obj: &Value) -> Result<(), String> {
    let generation = &obj["metadata"]["generation"];
    match condition(obj, "Ready") {
        Some(c) if c["status"] == "True" && obj["status"]["observedGeneration"] == *generation => Ok(()),
        Some(c) => Err(format!(
            "Ready={} reason={} message={} (phase {})",
            c["status"], c["reason"], c["message"], obj["status"]["phase"]
        )),
        None => Err(format!("no Ready condition; status {}", obj["status"])),
    }
}

impl Release {
    /// A simulated node of this test only (label `fireweave.test/node=<namespace>`), so that the test may
    /// cordon it without holding up the others.
    pub fn add_node(&self) -> String {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.ns, "labels": {"kubernetes.io/hostname": self.ns, "type": "kwok",
                                                      "fireweave.test/node": self.ns}},
            "status": {
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            }
        });
        self.cp
            .kubectl_with(&["create", "-f", "-"], Some(&node.to_string()))
            .expect("node");
        self.cp.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("node/{}", self.ns),
            "--timeout=120s",
        ]);
        self.ns.clone()
    }

    /// Marks the test's node unschedulable (or schedulable again): Pods already there keep running.
    pub fn cordon(&self, node: &str, on: bool) {
        self.cp.kubectl(&[if on { "cordon" } else { "uncordon" }, node]);
    }
}

/// Copies a folder (a fixture into the artifact volume); files are hard links where the file system allows,
/// since the workers only read them.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("target folder");
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
        .flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            }
        }
    }
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Standard base64 with padding (a kubeconfig's `*-data` fields).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn base64_pads_like_rfc_4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
