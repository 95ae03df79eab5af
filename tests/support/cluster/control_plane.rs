//! etcd → kube-apiserver → kube-controller-manager → kube-scheduler → kwok, each on a free port of 127.0.0.1,
//! built by scripts/cluster.sh (`$FIREWEAVE_CLUSTER_BIN`). The API server has its own CA and serving certificate,
//! authorizes with RBAC, issues ServiceAccount tokens, knows its users by client certificate, and writes an audit
//! log of every request made by a ServiceAccount outside kube-system (the operators under test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::kubelet::{Image, Kubelet};
use super::pki::{self, Auth, Pki};
use super::process::{Daemon, free_port, tail};

/// Where the binaries are: `$FIREWEAVE_CLUSTER_BIN` (scripts/test.sh exports it after building them).
pub fn binaries() -> PathBuf {
    let dir = std::env::var_os("FIREWEAVE_CLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "FIREWEAVE_CLUSTER_BIN is not set: run ./scripts/test.sh, or \
             export FIREWEAVE_CLUSTER_BIN=\"$(bash scripts/cluster.sh)\""
            )
        });
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run bash scripts/cluster.sh",
            dir.join(b).display()
        );
    }
    dir
}

/// What the control plane is tuned for.
#[derive(Clone, Debug)]
pub struct Options {
    /// Client rate limits of the controller manager, scheduler and kwok. The defaults (20-50 requests/s) keep
    /// a real cluster's control plane calm; a test that creates a thousand Jobs would mostly measure them.
    pub qps: u32,
    /// Pods KWOK updates at once.
    pub kwok_parallelism: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            qps: 100,
            kwok_parallelism: 4,
        }
    }
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub server: String,
    pub pki: Pki,
    pub admin_kubeconfig: PathBuf,
    pub audit_log: PathBuf,
    /// etcd start → kube-apiserver /readyz.
    pub to_readyz: Duration,
    /// etcd start → every component up and a node Ready.
    pub to_ready: Duration,
    pub kubelet: Kubelet,
    daemons: Mutex<Vec<Daemon>>,
    /// Runs the kubelet (and whatever else must outlive a single test).
    pub runtime: tokio::runtime::Runtime,
}

/// The Go collector's target for every component (GOGC; Go's default is 100). On this 2-core machine the API
/// server spent a quarter of its CPU allocating and marking under the benchmark's load (pprof); a test control
/// plane lives for minutes and memory is plentiful, so each collection may wait for the heap to triple. Under the
/// benchmark the API server peaked at 2.8 GiB with 200, 4.2 GiB with 400, 6.9 GiB with 1000, for a few CPU
/// seconds less each.
const GOGC: &str = "200";

/// A command for one of the Go components, with the collector target above.
fn go_component(path: PathBuf) -> Command {
    let mut command = Command::new(path);
    command.env("GOGC", GOGC);
    command
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
# The built-in controllers (kube-system ServiceAccounts) are not under test and would be most of the log.
- level: None
  userGroups: [\"system:serviceaccounts:kube-system\"]
# Every request of every other ServiceAccount: the operators under test.
- level: Metadata
  userGroups: [\"system:serviceaccounts\"]
";

impl ControlPlane {
    /// Starts every component in `dir` and waits until the API server is ready and a node is Ready.
    pub fn start(dir: &Path, options: &Options, images: BTreeMap<String, Image>) -> Self {
        let bin = binaries();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("control plane dir");
        let pki = Pki::create(&dir.join("pki"));
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let server = format!("https://127.0.0.1:{api_port}");
        let ca = pki.path("ca.crt");
        let kubeconfig = |name: &str, user: &str, groups: &[&str]| {
            let id = pki.client(name, user, groups);
            let path = dir.join(format!("{name}.kubeconfig"));
            std::fs::write(&path, pki::kubeconfig(&server, &ca, user, Auth::Certificate(&id))).expect("kubeconfig");
            path
        };
        let admin = kubeconfig("admin", "admin", &["system:masters"]);
        // The users kubeadm gives these components; the bootstrap RBAC roles grant them exactly their rights.
        let kcm = kubeconfig("kube-controller-manager", "system:kube-controller-manager", &[]);
        let scheduler = kubeconfig("kube-scheduler", "system:kube-scheduler", &[]);
        // KWOK plays every kubelet; a node identity (system:node:<name>) exists per node, so it runs as admin.
        let kwok = kubeconfig("kwok", "kwok", &["system:masters"]);
        let audit_log = dir.join("audit.log");
        std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY).expect("audit policy");

        let started = Instant::now();
        let mut daemons = Vec::new();
        let mut etcd = go_component(bin.join("etcd"));
        etcd.arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"))
            // Test data: durability across a power cut is not needed, fsync latency is.
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        daemons.push(Daemon::start("etcd", etcd, logs.join("etcd.log")));

        let mut apiserver = go_component(bin.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--tls-cert-file={}", pki.path("apiserver.crt").display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.path("apiserver.key").display()
            ))
            .arg(format!("--client-ca-file={}", ca.display()))
            // kubeadm's default range (a /12 is the largest allowed): room for thousands of Services.
            .arg("--service-cluster-ip-range=10.96.0.0/12")
            .arg(format!("--service-account-issuer={server}"))
            .arg(format!("--service-account-key-file={}", pki.path("sa.pub").display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.path("sa.key").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--allow-privileged=true")
            // The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints reject (loopback).
            .arg("--endpoint-reconciler-type=none")
            .arg(format!(
                "--audit-policy-file={}",
                dir.join("audit-policy.yaml").display()
            ))
            .arg(format!("--audit-log-path={}", audit_log.display()))
            .arg("--audit-log-format=json")
            // Written before the response goes out: a test that reads the log after a request finds it there.
            .arg("--audit-log-mode=blocking")
            // One file for the whole run: rotation (100 MB by default) would hide the older events from a test
            // or a benchmark that reads the log.
            .arg("--audit-log-maxsize=1000000")
            // Off unless asked for: FIREWEAVE_CLUSTER_PROFILING=1 serves /debug/pprof to the admin user
            // (`kubectl get --raw '/debug/pprof/profile?seconds=30'`), to see where the API server's CPU goes.
            .arg(format!(
                "--profiling={}",
                std::env::var("FIREWEAVE_CLUSTER_PROFILING").is_ok_and(|v| v == "1")
            ))
            .arg("--v=1");
        daemons.push(Daemon::start(
            "kube-apiserver",
            apiserver,
            logs.join("kube-apiserver.log"),
        ));
        let kubectl = |args: &[&str]| {
            Command::new(bin.join("kubectl"))
                .arg(format!("--kubeconfig={}", admin.display()))
                .args(args)
                .output()
        };
        wait_until(&mut daemons, Duration::from_secs(120), "kube-apiserver /readyz", || {
            kubectl(&["get", "--raw=/readyz"]).is_ok_and(|o| o.status.success())
        });
        let to_readyz = started.elapsed();

        let mut kcm_cmd = go_component(bin.join("kube-controller-manager"));
        kcm_cmd
            .arg(format!("--kubeconfig={}", kcm.display()))
            .arg(format!("--authentication-kubeconfig={}", kcm.display()))
            .arg(format!("--authorization-kubeconfig={}", kcm.display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--secure-port=0")
            .arg("--leader-elect=false")
            // Every default controller but the three that keep Endpoints and EndpointSlices for Services: the
            // simulated Pods answer nothing, no test reads endpoints, and for a thousand ModelServings they were
            // 6,200 writes of the benchmark's 50,000.
            .arg("--controllers=*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller")
            // Each controller acts as its own ServiceAccount (what kubeadm sets), with its bootstrap role.
            .arg("--use-service-account-credentials=true")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.path("sa.key").display()
            ))
            .arg(format!("--root-ca-file={}", ca.display()))
            .arg(format!("--kube-api-qps={}", options.qps))
            .arg(format!("--kube-api-burst={}", options.qps * 2))
            .arg("--v=1");
        daemons.push(Daemon::start(
            "kube-controller-manager",
            kcm_cmd,
            logs.join("kube-controller-manager.log"),
        ));

        let scheduler_config = dir.join("kube-scheduler.yaml");
        std::fs::write(
            &scheduler_config,
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
                 clientConnection: {{kubeconfig: {}, qps: {}, burst: {}}}\nleaderElection: {{leaderElect: false}}\n",
                scheduler.display(),
                options.qps,
                options.qps * 2
            ),
        )
        .expect("scheduler config");
        let mut sched = go_component(bin.join("kube-scheduler"));
        sched
            .arg(format!("--config={}", scheduler_config.display()))
            .arg("--secure-port=0")
            .arg("--v=1");
        daemons.push(Daemon::start("kube-scheduler", sched, logs.join("kube-scheduler.log")));

        let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/stages.yaml");
        let kwok_config = dir.join("kwok.yaml");
        std::fs::write(
            &kwok_config,
            format!(
                "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  \
                 podPlayStageParallelism: {p}\n  nodePlayStageParallelism: 2\n  nodeLeaseParallelism: 2\n  \
                 podsOnNodeSyncParallelism: 1\n---\n{}",
                std::fs::read_to_string(&stages).expect("tests/cluster/stages.yaml"),
                p = options.kwok_parallelism
            ),
        )
        .expect("kwok config");
        let mut kwok_cmd = go_component(bin.join("kwok"));
        kwok_cmd
            .arg(format!("--kubeconfig={}", kwok.display()))
            .arg(format!("--config={}", kwok_config.display()))
            .arg("--manage-all-nodes=true")
            // Loopback addresses: nothing answers there, so a connection to a Pod IP fails at once instead of
            // waiting for a timeout on an unroutable network.
            .arg("--cidr=127.96.0.0/16")
            .arg("--node-ip=127.95.0.1")
            .arg("--node-lease-duration-seconds=40")
            .arg(format!("--server-address=127.0.0.1:{}", free_port()));
        daemons.push(Daemon::start("kwok", kwok_cmd, logs.join("kwok.log")));

        // Two simulated nodes: a GPU node as GPU node pools are usually set up (labelled, tainted so that only
        // Pods that tolerate it land there, 8 GPUs), and a CPU node for everything else.
        let nodes = [
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "kwok-gpu-0", "labels": {"kubernetes.io/hostname": "kwok-gpu-0", "type": "kwok",
                                                              "nvidia.com/gpu.present": "true"}},
                "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "64", "memory": "512Gi", "pods": "500", "nvidia.com/gpu": "8"},
                           "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "500", "nvidia.com/gpu": "8"}},
            }),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "kwok-cpu-0", "labels": {"kubernetes.io/hostname": "kwok-cpu-0", "type": "kwok"}},
                "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                           "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"}},
            }),
        ];
        for node in nodes {
            let path = dir.join(format!("{}.json", node["metadata"]["name"].as_str().unwrap_or("node")));
            std::fs::write(&path, node.to_string()).expect("node manifest");
            let out = kubectl(&["create", "-f", &path.display().to_string()]).expect("kubectl runs");
            assert!(
                out.status.success(),
                "creating a node: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        wait_until(
            &mut daemons,
            Duration::from_secs(120),
            "nodes Ready and the default ServiceAccount",
            || {
                let ready = kubectl(&[
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "True True");
                // The ServiceAccount controller (kube-controller-manager) makes `default` in every namespace.
                ready
                    && kubectl(&["get", "serviceaccount", "default", "-n", "default"]).is_ok_and(|o| o.status.success())
            },
        );
        let to_ready = started.elapsed();

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluster-keeper")
            .enable_all()
            .build()
            .expect("runtime");
        // On a thread of its own: the caller may itself be a test's runtime, where block_on is not allowed.
        let kubelet = std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(async { Kubelet::new(client_from(&admin).await, dir.join("pods"), images) }))
                .join()
                .expect("kubelet client")
        });
        runtime.spawn(kubelet.clone().run());
        Self {
            dir: dir.to_path_buf(),
            bin,
            server,
            pki,
            admin_kubeconfig: admin,
            audit_log,
            to_readyz,
            to_ready,
            kubelet,
            daemons: Mutex::new(daemons),
            runtime,
        }
    }

    /// `kubectl` as the cluster admin; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_with(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl` as the cluster admin, with `stdin`; the error is its stderr.
    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        kubectl_as(&self.bin, &self.admin_kubeconfig, args, stdin)
    }

    /// A kube client as the cluster admin, on the caller's runtime.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.admin_kubeconfig).await
    }

    /// Panics when a component has died, with the tail of its log.
    pub fn assert_running(&self) {
        for d in self.daemons.lock().unwrap().iter_mut() {
            d.assert_running();
        }
    }

    /// Log files of the components (for failure messages).
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Process ids of the components, by name (the benchmark reads their CPU time).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.daemons
            .lock()
            .unwrap()
            .iter()
            .map(|d| (d.name.clone(), d.pid()))
            .collect()
    }

    /// Stops every component now (the benchmark; the shared test control plane dies with the test binary).
    pub fn stop(&self) {
        self.kubelet.stop();
        self.daemons.lock().unwrap().clear();
    }
}

pub fn kubectl_as(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut c = Command::new(bin.join("kubectl"));
    // A cache of its own: ~/.kube/cache would hold discovery and OpenAPI documents of earlier control planes.
    let cache = kubeconfig.with_file_name("kubectl-cache");
    c.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("kubectl: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .map_err(|e| format!("kubectl stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

fn wait_until(daemons: &mut [Daemon], limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        for d in daemons.iter_mut() {
            d.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = daemons
                .iter()
                .map(|d| format!("--- {} ({})\n{}", d.name, d.log.display(), tail(&d.log, 15)))
                .collect();
            panic!("{what}: not ready after {limit:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
