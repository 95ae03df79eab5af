//! Operator configuration: flags, each with an environment variable the Helm chart sets.

use std::path::PathBuf;

/// Arguments of `fireweave-ai operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Image of the dataset worker (`fireweave-ai dataset`); the operator image works, it has no heavy features.
    #[arg(
        long,
        env = "FIREWEAVE_WORKER_IMAGE",
        default_value = "ghcr.io/fireweave/fireweave-ai:0.1.0"
    )]
    pub worker_image: String,
    /// Image of the train and quantize steps (built with the `train` feature, CUDA libtorch).
    #[arg(
        long,
        env = "FIREWEAVE_TRAINER_IMAGE",
        default_value = "ghcr.io/fireweave/fireweave-ai-trainer:0.1.0"
    )]
    pub trainer_image: String,
    /// Image of the built-in server (`engine: builtin`, built with the `serve` feature).
    #[arg(
        long,
        env = "FIREWEAVE_SERVE_IMAGE",
        default_value = "ghcr.io/fireweave/fireweave-ai-serve:0.1.0"
    )]
    pub serve_image: String,
    /// Official Ollama image (`engine: ollama`). Pin a tag or digest; nothing is downloaded at Pod start.
    #[arg(
        long,
        env = "FIREWEAVE_OLLAMA_IMAGE",
        default_value = "docker.io/ollama/ollama:0.12.6"
    )]
    pub ollama_image: String,
    /// ServiceAccount of the dataset, training and serving Pods, in their namespace: one with no API rights
    /// (the Pods never mount a token either). Empty: each namespace's `default` account.
    #[arg(long, env = "FIREWEAVE_WORKER_SERVICE_ACCOUNT", default_value = "")]
    pub worker_service_account: String,
    /// PersistentVolumeClaim holding datasets, checkpoints and models (ReadWriteMany recommended).
    #[arg(long, env = "FIREWEAVE_ARTIFACT_PVC", default_value = "fireweave-artifacts")]
    pub artifact_pvc: String,
    /// Where the operator itself mounts the artifact volume, for `artifactRetention: Delete` clean-up.
    #[arg(long, env = "FIREWEAVE_ARTIFACT_MOUNT", default_value = "/artifacts")]
    pub artifact_mount: PathBuf,
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, env = "FIREWEAVE_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FIREWEAVE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: std::net::SocketAddr,
    /// Elect one active replica through a Lease (turn off only for a single replica run by hand).
    #[arg(long, env = "FIREWEAVE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "FIREWEAVE_LEASE_NAME", default_value = "fireweave-ai-operator")]
    pub lease_name: String,
    /// Namespace of the Lease: the operator's own (the chart passes the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "fireweave-system")]
    pub lease_namespace: String,
}

/// What the builders need to know about the installation (a subset of [`Args`], no I/O).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub worker_image: String,
    pub trainer_image: String,
    pub serve_image: String,
    pub ollama_image: String,
    /// `None`: the namespace's `default` ServiceAccount.
    pub worker_service_account: Option<String>,
    pub artifact_pvc: String,
    pub artifact_mount: PathBuf,
}

impl From<&Args> for Settings {
    fn from(a: &Args) -> Self {
        Self {
            worker_image: a.worker_image.clone(),
            trainer_image: a.trainer_image.clone(),
            serve_image: a.serve_image.clone(),
            ollama_image: a.ollama_image.clone(),
            worker_service_account: Some(a.worker_service_account.clone()).filter(|s| !s.is_empty()),
            artifact_pvc: a.artifact_pvc.clone(),
            artifact_mount: a.artifact_mount.clone(),
        }
    }
}

impl Settings {
    /// Fixed values for tests and the benchmark.
    pub fn example() -> Self {
        Self {
            worker_image: "fireweave-ai:test".into(),
            trainer_image: "fireweave-ai-trainer:test".into(),
            serve_image: "fireweave-ai-serve:test".into(),
            ollama_image: "ollama/ollama:test".into(),
            worker_service_account: None,
            artifact_pvc: "fireweave-artifacts".into(),
            artifact_mount: PathBuf::from("/artifacts"),
        }
    }
}
