//! `fireweave-ai run`: the embedded default. The same Dataset / TrainingRun / ModelServing YAML a cluster
//! takes, run on one machine without one: each step in-process with the worker code the cluster Jobs run,
//! artifacts in a local folder laid out like the cluster's artifact volume, statuses in the CRs' own shape.
//!
//! Order of work: read and check every manifest (nothing runs if any is wrong) → order by references → for
//! each resource, skip it when its inputs are unchanged and its outputs intact, else run it → serve every
//! ModelServing in the foreground until interrupted.

pub mod graph;
pub mod manifest;
pub mod state;
mod steps;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use steps::StepError;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Manifest files or folders (YAML, multi-document files allowed).
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// Artifact folder, laid out like the cluster's artifact volume (datasets/, runs/, models/, status/).
    /// Default: `.fireweave` beside the first manifest.
    #[arg(long, env = "FIREWEAVE_ARTIFACTS")]
    pub artifacts: Option<PathBuf>,
    /// Address of the first ModelServing's Ollama API; further ones take the following ports.
    #[arg(long, default_value = "127.0.0.1:11434", env = "FIREWEAVE_SERVE_ADDR")]
    pub addr: SocketAddr,
    /// Build everything, then stop instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// CPU threads for training and inference (default: all cores).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Training device: auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run every step even when its inputs are unchanged.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Step(#[from] StepError),
}

/// What one resource's step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Ran,
    /// Inputs unchanged and outputs intact: the stored status stands.
    Skipped,
}

/// Runs the manifests; returns after serving ends (Ctrl-C / SIGTERM), or after building with `--no-serve`.
pub fn run(args: RunArgs) -> Result<Vec<(manifest::Key, Done)>, RunError> {
    let manifests = manifest::load(&args.paths)?;
    let artifacts = args.artifacts.clone().unwrap_or_else(|| default_artifacts(&args.paths));
    let order = graph::order(&manifests, &artifacts).map_err(manifest::ManifestError::Invalid)?;
    std::fs::create_dir_all(&artifacts).map_err(|source| StepError::Io {
        path: artifacts.clone(),
        source,
    })?;
    let artifacts = artifacts.canonicalize().unwrap_or(artifacts);
    crate::telemetry::install_view();
    let mut pipeline = steps::Pipeline::new(&args, artifacts);
    for i in order {
        if let Err(e) = pipeline.run(&manifests[i]) {
            // What was done, and an evaluation that stopped the rollout, still reach the person.
            view::summary(&pipeline);
            return Err(e.into());
        }
    }
    view::summary(&pipeline);
    if !args.no_serve {
        pipeline.serve_until_stopped()?;
    }
    Ok(pipeline.done())
}

/// `.fireweave` next to the first manifest (or inside it, when it is a folder).
fn default_artifacts(paths: &[PathBuf]) -> PathBuf {
    let first = paths.first().cloned().unwrap_or_default();
    let dir = if first.is_dir() {
        first
    } else {
        first.parent().map(PathBuf::from).unwrap_or_default()
    };
    dir.join(".fireweave")
}
