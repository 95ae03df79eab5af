//! The part of a kubelet that KWOK leaves out: actually running a Job's Pod. When the scheduler has bound a Pod
//! that a Job owns, its volumes are made into folders (ConfigMaps and Secrets written out as files, the
//! PersistentVolumeClaim followed to its PersistentVolume's host path, emptyDirs as fresh folders), its init
//! containers run one after the other and then its containers, each as described in `container.rs`. What
//! happens is written into the Pod's `test.fireweave.io/kubelet` annotation, and KWOK's `job-pod-status` stage
//! (tests/cluster/stages.yaml) turns it into the Pod status: real exit codes, real termination messages.
//!
//! A Pod that is deleted while it runs (an eviction, a Job being deleted) gets SIGTERM, then SIGKILL after its
//! grace period, and its end is reported the same way, so the Job controller sees a terminal Pod as it would
//! from a kubelet. Pods nobody owns through a Job (a Deployment's replicas) are left to KWOK alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::container::{self, Launch, Mount};
use super::{network, process};

pub const ANNOTATION: &str = "test.fireweave.io/kubelet";

/// What an image is, here: the program it starts and the environment its Dockerfile sets.
#[derive(Clone, Debug)]
pub struct Image {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Instead of running a container, hand back a made-up result (the benchmark's workers): `(exit code, message)`.
pub type FakeRun = Arc<dyn Fn(&Pod, &Container) -> (i32, String) + Send + Sync>;

#[derive(Serialize, Clone, Default)]
struct Record {
    #[serde(rename = "startedAt")]
    started_at: String,
    containers: BTreeMap<String, ContainerRecord>,
}

#[derive(Serialize, Clone, Default)]
struct ContainerRecord {
    #[serde(rename = "startedAt")]
    started_at: String,
    #[serde(rename = "finishedAt", skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(rename = "exitCode", skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// One Pod this kubelet has taken on.
struct Running {
    namespace: String,
    stop: Arc<AtomicBool>,
    /// Seconds between SIGTERM and SIGKILL once `stop` is set.
    grace: Arc<Mutex<u64>>,
}

#[derive(Clone)]
pub struct Kubelet {
    client: Client,
    root: PathBuf,
    images: Arc<BTreeMap<String, Image>>,
    pods: Arc<Mutex<HashMap<String, Running>>>,
    fakes: Arc<Mutex<HashMap<String, FakeRun>>>,
    /// Every container started, in order, `namespace/pod/container` (tests read it to know what ran).
    pub started: Arc<Mutex<Vec<String>>>,
    /// Set when the control plane is stopped on purpose: the watch's errors are then expected.
    stopped: Arc<AtomicBool>,
}

/// Metav1.Time has whole seconds; anything finer would come back truncated and make KWOK re-render forever.
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn owned_by_job(pod: &Pod) -> bool {
    pod.owner_references().iter().any(|o| o.kind == "Job")
}

fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

impl Kubelet {
    /// `images`: repository (no tag) → what it runs. `root`: where Pod folders and container logs go.
    pub fn new(client: Client, root: PathBuf, images: BTreeMap<String, Image>) -> Self {
        Self {
            client,
            root,
            images: Arc::new(images),
            pods: Default::default(),
            fakes: Default::default(),
            started: Default::default(),
            stopped: Default::default(),
        }
    }

    /// Kills the containers still running for Pods of `namespace` (its test has ended), without a grace period.
    pub fn stop_namespace(&self, namespace: &str) {
        for running in self.pods.lock().unwrap().values().filter(|r| r.namespace == namespace) {
            *running.grace.lock().unwrap() = 0;
            running.stop.store(true, Ordering::SeqCst);
        }
    }

    /// The API server is about to go away: stop watching quietly.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Pods in `namespace` get `fake` instead of a process (the benchmark's thousands of workers).
    pub fn fake_workers(&self, namespace: &str, fake: FakeRun) {
        self.fakes.lock().unwrap().insert(namespace.to_string(), fake);
    }

    /// Where the folders and logs of Pod `ns/name` are.
    pub fn pod_dir(&self, ns: &str, name: &str) -> PathBuf {
        self.root.join(ns).join(name)
    }

    /// Watches every Pod and runs the Job Pods bound to a node; returns when the watch ends (never, normally).
    pub async fn run(self) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut events = watcher(pods, watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => self.observe(pod, false),
                Ok(watcher::Event::Delete(pod)) => self.observe(pod, true),
                Ok(_) => {}
                Err(_) if self.stopped.load(Ordering::SeqCst) => return,
                Err(e) => eprintln!("cluster kubelet: pod watch: {e}"),
            }
        }
    }

    fn observe(&self, pod: Pod, gone: bool) {
        if !owned_by_job(&pod) || pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
            return;
        }
        let uid = pod.uid().unwrap_or_default();
        let mut pods = self.pods.lock().unwrap();
        if let Some(running) = pods.get(&uid) {
            if gone || pod.metadata.deletion_timestamp.is_some() {
                let grace = if gone {
                    0
                } else {
                    pod.metadata
                        .deletion_grace_period_seconds
                        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                        .unwrap_or(30)
                        .max(0) as u64
                };
                *running.grace.lock().unwrap() = grace;
                running.stop.store(true, Ordering::SeqCst);
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        // A Pod that another kubelet run already handled (this process restarted) or that is finished stays so.
        if gone
            || pod.metadata.deletion_timestamp.is_some()
            || matches!(phase, Some("Succeeded" | "Failed"))
            || pod.annotations().contains_key(ANNOTATION)
        {
            return;
        }
        let running = Running {
            namespace: pod.namespace().unwrap_or_default(),
            stop: Arc::new(AtomicBool::new(false)),
            grace: Arc::new(Mutex::new(30)),
        };
        let (stop, grace) = (running.stop.clone(), running.grace.clone());
        pods.insert(uid, running);
        let me = self.clone();
        tokio::spawn(async move {
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            if let Err(e) = me.run_pod(&pod, stop, grace).await {
                eprintln!("cluster kubelet: Pod {ns}/{name}: {e}");
            }
        });
    }

    async fn annotate(&self, pod: &Pod, record: &Record) -> Result<(), String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let text = serde_json::to_string(record).map_err(|e| e.to_string())?;
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: text}}});
        match api
            .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(format!("annotating: {e}")),
        }
    }

    async fn run_pod(&self, pod: &Pod, stop: Arc<AtomicBool>, grace: Arc<Mutex<u64>>) -> Result<(), String> {
        let ns = pod.namespace().unwrap_or_default();
        let dir = self.pod_dir(&ns, &pod.name_any());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut record = Record {
            started_at: now(),
            ..Default::default()
        };
        let fake = self.fakes.lock().unwrap().get(&ns).cloned();
        if let Some(fake) = fake {
            // Made-up workers end at once: one record with every container done (the benchmark's thousands
            // of Pods would otherwise cost two annotations per container).
            let containers = spec.init_containers.iter().flatten().chain(spec.containers.iter());
            for c in containers {
                let (code, message) = fake(pod, c);
                record.containers.insert(
                    c.name.clone(),
                    ContainerRecord {
                        started_at: record.started_at.clone(),
                        finished_at: Some(record.started_at.clone()),
                        exit_code: Some(code),
                        reason: Some(if code == 0 { "Completed" } else { "Error" }.to_string()),
                        message: Some(message).filter(|m| !m.is_empty()),
                    },
                );
                if code != 0 {
                    break;
                }
            }
            return self.annotate(pod, &record).await;
        }
        let volumes = match self
            .volumes(&ns, &dir, spec.volumes.as_deref().unwrap_or_default(), &stop)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                // A kubelet would keep retrying the mount with a FailedMount event; the Pod never starts.
                std::fs::write(dir.join("kubelet-error.txt"), &e).ok();
                return Err(e);
            }
        };
        self.annotate(pod, &record).await?;
        for c in spec.init_containers.as_deref().unwrap_or_default() {
            let result = self
                .run_container(pod, c, &volumes, &dir, &stop, &grace, &mut record)
                .await?;
            if result != 0 {
                return Ok(());
            }
        }
        // The containers of a Pod run side by side.
        let shared = Arc::new(tokio::sync::Mutex::new(record));
        let runs = spec.containers.iter().map(|c| {
            let (shared, volumes, dir, stop, grace) = (
                shared.clone(),
                volumes.clone(),
                dir.clone(),
                stop.clone(),
                grace.clone(),
            );
            async move {
                let (handle, started) = self.start_container(pod, c, &volumes, &dir).await?;
                {
                    let mut r = shared.lock().await;
                    r.containers.insert(c.name.clone(), started);
                    self.annotate(pod, &r).await?;
                }
                let finished = self.finish_container(c, handle, &stop, &grace).await;
                let mut r = shared.lock().await;
                r.containers.insert(c.name.clone(), finished);
                self.annotate(pod, &r).await
            }
        });
        for result in futures::future::join_all(runs).await {
            result?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_container(
        &self,
        pod: &Pod,
        c: &Container,
        volumes: &HashMap<String, PathBuf>,
        dir: &Path,
        stop: &Arc<AtomicBool>,
        grace: &Arc<Mutex<u64>>,
        record: &mut Record,
    ) -> Result<i32, String> {
        let (handle, started) = self.start_container(pod, c, volumes, dir).await?;
        record.containers.insert(c.name.clone(), started);
        self.annotate(pod, record).await?;
        let finished = self.finish_container(c, handle, stop, grace).await;
        let code = finished.exit_code.unwrap_or(255);
        record.containers.insert(c.name.clone(), finished);
        self.annotate(pod, record).await?;
        Ok(code)
    }

    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        volumes: &HashMap<String, PathBuf>,
        dir: &Path,
    ) -> Result<(Handle, ContainerRecord), String> {
        let ns = pod.namespace().unwrap_or_default();
        self.started
            .lock()
            .unwrap()
            .push(format!("{ns}/{}/{}", pod.name_any(), c.name));
        let started = ContainerRecord {
            started_at: now(),
            ..Default::default()
        };
        let launch = match self.launch(pod, c, volumes, dir).await {
            Ok(l) => l,
            Err(e) => return Ok((Handle::CannotRun(e), started)),
        };
        let log = dir.join(format!("{}.log", c.name));
        std::fs::write(&launch.termination_log, "").map_err(|e| e.to_string())?;
        match process::spawn(container::command(&launch), &log) {
            Ok(child) => {
                let ports = Arc::new(AtomicBool::new(false));
                self.forward_ports(pod, c, child.id(), ports.clone());
                Ok((
                    Handle::Process {
                        child,
                        launch: Box::new(launch),
                        log,
                        ports,
                    },
                    started,
                ))
            }
            Err(e) => Ok((Handle::CannotRun(format!("starting {}: {e}", launch.argv[0])), started)),
        }
    }

    async fn finish_container(
        &self,
        c: &Container,
        handle: Handle,
        stop: &Arc<AtomicBool>,
        grace: &Arc<Mutex<u64>>,
    ) -> ContainerRecord {
        let started_at = now();
        let (code, message) = match handle {
            Handle::CannotRun(why) => (128, why),
            Handle::Process {
                mut child,
                launch,
                log,
                ports,
            } => {
                let (stop, grace) = (stop.clone(), grace.clone());
                let status = tokio::task::spawn_blocking(move || {
                    loop {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Some(status);
                        }
                        if stop.load(Ordering::SeqCst) {
                            let grace = Duration::from_secs(*grace.lock().unwrap());
                            return process::stop(&mut child, libc::SIGTERM, grace);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .await
                .ok()
                .flatten();
                ports.store(true, Ordering::SeqCst);
                let code = status.map(process::exit_code).unwrap_or(255);
                let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
                (
                    code,
                    container::termination_message(&launch.termination_log, &log, code, fallback),
                )
            }
        };
        ContainerRecord {
            started_at,
            finished_at: Some(now()),
            exit_code: Some(code),
            reason: Some(if code == 0 { "Completed" } else { "Error" }.to_string()),
            message: Some(message).filter(|m| !m.is_empty()),
        }
    }

    /// Makes the container's TCP ports answer on the Pod's IP (once KWOK has given it one).
    fn forward_ports(&self, pod: &Pod, c: &Container, pid: u32, stop: Arc<AtomicBool>) {
        let ports: Vec<u16> = c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect();
        if ports.is_empty() || container::isolation() != container::Isolation::MountNamespace {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        tokio::spawn(async move {
            for _ in 0..150 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let ip = api
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|p| p.status.and_then(|s| s.pod_ip));
                if let Some(ip) = ip {
                    for port in ports {
                        if let Err(e) = network::forward(&ip, port, pid, stop.clone()) {
                            eprintln!("cluster kubelet: Pod {name} port {ip}:{port}: {e}");
                        }
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// Folders for the Pod's volumes, by volume name.
    async fn volumes(
        &self,
        ns: &str,
        dir: &Path,
        volumes: &[Volume],
        stop: &AtomicBool,
    ) -> Result<HashMap<String, PathBuf>, String> {
        let mut out = HashMap::new();
        for v in volumes {
            let path = dir.join("volumes").join(&v.name);
            if let Some(cm) = &v.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
                let name = cm.name.clone();
                let found = self.wait_for(stop, || api.get_opt(&name)).await?;
                let data: BTreeMap<String, Vec<u8>> = match found {
                    Some(cm) => cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .chain(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)))
                        .collect(),
                    None => BTreeMap::new(),
                };
                write_files(&path, &data, cm.items.as_deref())?;
            } else if let Some(secret) = &v.secret {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
                let name = secret.secret_name.clone().unwrap_or_default();
                let found = self.wait_for(stop, || api.get_opt(&name)).await?;
                let data = found
                    .and_then(|s| s.data)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                write_files(&path, &data, secret.items.as_deref())?;
            } else if let Some(claim) = &v.persistent_volume_claim {
                out.insert(v.name.clone(), self.claim_path(ns, &claim.claim_name).await?);
                continue;
            } else if v.empty_dir.is_some() {
                std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            } else {
                return Err(format!("volume {} has a type the test kubelet does not mount", v.name));
            }
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    /// Retries a read until the object exists (a kubelet waits for a missing ConfigMap the same way).
    async fn wait_for<T, F, Fut>(&self, stop: &AtomicBool, get: F) -> Result<Option<T>, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, kube::Error>>,
    {
        for _ in 0..600 {
            match get().await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) if stop.load(Ordering::SeqCst) => return Ok(None),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(None)
    }

    /// The host folder behind a claim: the bound PersistentVolume's hostPath (the harness makes them).
    async fn claim_path(&self, ns: &str, claim: &str) -> Result<PathBuf, String> {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = pvcs.get(claim).await.map_err(|e| format!("claim {ns}/{claim}: {e}"))?;
        let volume = pvc
            .spec
            .and_then(|s| s.volume_name)
            .ok_or_else(|| format!("claim {ns}/{claim} is not bound"))?;
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = pvs.get(&volume).await.map_err(|e| format!("volume {volume}: {e}"))?;
        pv.spec
            .and_then(|s| s.host_path.map(|h| h.path).or(s.local.map(|l| l.path)))
            .map(PathBuf::from)
            .ok_or_else(|| format!("volume {volume} has no host path"))
    }

    /// The container's process description: image entrypoint, Pod command/args/env, mounts.
    pub async fn launch(
        &self,
        pod: &Pod,
        c: &Container,
        volumes: &HashMap<String, PathBuf>,
        dir: &Path,
    ) -> Result<Launch, String> {
        let image_ref = c.image.clone().unwrap_or_default();
        let image = self
            .images
            .get(repository(&image_ref))
            .ok_or_else(|| format!("image {image_ref} is not one the test kubelet can run"))?;
        let mut env: Vec<(String, String)> = image.env.clone();
        env.push(("HOSTNAME".into(), pod.name_any()));
        for (k, v) in self
            .resolve_env(pod, c.env.as_deref().unwrap_or_default(), &env)
            .await?
        {
            env.retain(|(name, _)| *name != k);
            env.push((k, v));
        }
        let mut argv: Vec<String> = match &c.command {
            Some(command) => command.clone(),
            None => image.entrypoint.clone(),
        };
        match (&c.command, &c.args) {
            (_, Some(args)) => argv.extend(args.iter().cloned()),
            (None, None) => argv.extend(image.cmd.iter().cloned()),
            (Some(_), None) => {}
        }
        let argv = argv.iter().map(|a| container::expand(a, &env)).collect();
        let mut mounts = Vec::new();
        for m in c.volume_mounts.as_deref().unwrap_or_default() {
            let host = volumes
                .get(&m.name)
                .ok_or_else(|| format!("mount of unknown volume {}", m.name))?;
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => host.join(sub),
                None => host.clone(),
            };
            mounts.push(Mount {
                host,
                path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        Ok(Launch {
            argv,
            env,
            mounts,
            read_only_root: c
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            working_dir: c.working_dir.clone(),
            termination_log: dir.join(format!("{}.termination-log", c.name)),
            termination_path: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            scratch: dir.join("scratch").join(&c.name),
            own_network: true,
        })
    }

    /// `env` entries in order; later entries may refer to earlier ones with `$(NAME)`.
    async fn resolve_env(
        &self,
        pod: &Pod,
        vars: &[EnvVar],
        base: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod.namespace().unwrap_or_default();
        let mut out: Vec<(String, String)> = Vec::new();
        for var in vars {
            let mut visible = base.to_vec();
            visible.extend(out.iter().cloned());
            let value = if let Some(v) = &var.value {
                container::expand(v, &visible)
            } else if let Some(from) = &var.value_from {
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path)?
                } else if let Some(key) = &from.secret_key_ref {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
                    let secret = api.get_opt(&key.name).await.map_err(|e| e.to_string())?;
                    match secret.and_then(|s| s.data).and_then(|d| d.get(&key.key).cloned()) {
                        Some(bytes) => String::from_utf8_lossy(&bytes.0).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => return Err(format!("secret {}/{} key {} is missing", ns, key.name, key.key)),
                    }
                } else if let Some(key) = &from.config_map_key_ref {
                    let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
                    let cm = api.get_opt(&key.name).await.map_err(|e| e.to_string())?;
                    match cm.and_then(|c| c.data).and_then(|d| d.get(&key.key).cloned()) {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => return Err(format!("configmap {}/{} key {} is missing", ns, key.name, key.key)),
                    }
                } else {
                    return Err(format!(
                        "env {}: a valueFrom the test kubelet does not resolve",
                        var.name
                    ));
                }
            } else {
                String::new()
            };
            out.retain(|(k, _)| *k != var.name);
            out.push((var.name.clone(), value));
        }
        Ok(out)
    }
}

enum Handle {
    Process {
        child: std::process::Child,
        // Boxed: a Launch is large beside the other variant's String.
        launch: Box<Launch>,
        log: PathBuf,
        /// Set when the container ends: its port forwarders stop.
        ports: Arc<AtomicBool>,
    },
    CannotRun(String),
}

fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let label = |prefix: &str, map: &BTreeMap<String, String>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|k| map.get(k).cloned().unwrap_or_default())
    };
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.hostIP" => String::new(),
        _ => {
            if let Some(v) = label("metadata.labels", pod.labels()) {
                v
            } else if let Some(v) = label("metadata.annotations", pod.annotations()) {
                v
            } else {
                return Err(format!("fieldRef {path} is not resolved by the test kubelet"));
            }
        }
    })
}

/// A ConfigMap or Secret volume: every key as a file, or only `items` at their paths.
fn write_files(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let files: Vec<(String, &Vec<u8>)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d)))
            .collect(),
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (name, bytes) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
