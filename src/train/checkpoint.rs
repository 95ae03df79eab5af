//! Training checkpoints: written under a temporary name and renamed, so a pod killed mid-write leaves
//! either the previous checkpoint or a complete new one. `state.json` is written last and records the
//! sha256 of the tensor files; a checkpoint is valid only when those digests match.

use super::lora::LoraStore;
use super::optim::AdamW;
use crate::artifact::{self, IoError, file_digest, io};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointIoError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{path}: {source}")]
    Torch { path: PathBuf, source: tch::TchError },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LossPoint {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalPoint {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
}

/// Everything besides tensors that a resumed run needs to continue exactly where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainState {
    /// Optimizer steps completed; the next step to run.
    pub step: usize,
    /// Data position: the epoch and the micro-batch within it that come next. Batch order is a pure
    /// function of (seed, epoch), so these pin the data stream exactly.
    pub epoch: usize,
    pub micro_batch: usize,
    /// Dropout's generator is reseeded from (seed, step) every step; storing the seed restores it.
    pub rng_seed: u64,
    pub adam_t: i64,
    pub tokens: u64,
    pub losses: Vec<LossPoint>,
    pub evals: Vec<EvalPoint>,
    /// Fingerprint of what is being trained (spec and dataset digest): a checkpoint of other inputs is
    /// never resumed.
    #[serde(default)]
    pub inputs: String,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

fn write_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<(), CheckpointIoError> {
    Tensor::write_safetensors(named, path).map_err(|source| CheckpointIoError::Torch {
        path: path.to_owned(),
        source,
    })
}

fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointIoError> {
    let v = Tensor::read_safetensors(path).map_err(|source| CheckpointIoError::Torch {
        path: path.to_owned(),
        source,
    })?;
    Ok(v.into_iter().collect())
}

fn step_dir_name(step: usize) -> String {
    format!("step-{step:08}")
}

/// Writes checkpoint `state.step` into `root` and keeps only the newest `keep` checkpoints.
pub fn save(
    root: &Path,
    lora: &LoraStore,
    opt: &AdamW,
    mut state: TrainState,
    keep: usize,
) -> Result<PathBuf, CheckpointIoError> {
    let final_dir = root.join(step_dir_name(state.step));
    let tmp = artifact::staging(&final_dir)?;
    let named = lora.named();
    let adapter: Vec<(String, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu)))
        .collect();
    let mut moments = Vec::with_capacity(named.len() * 2);
    for (((n, _), m), v) in named.iter().zip(&opt.m).zip(&opt.v) {
        moments.push((format!("{n}.exp_avg"), m.to_device(tch::Device::Cpu)));
        moments.push((format!("{n}.exp_avg_sq"), v.to_device(tch::Device::Cpu)));
    }
    write_tensors(&tmp.join(ADAPTER_FILE), &adapter)?;
    write_tensors(&tmp.join(OPTIMIZER_FILE), &moments)?;
    state.adam_t = opt.t;
    state.files.clear();
    for f in [ADAPTER_FILE, OPTIMIZER_FILE] {
        state.files.insert(f.to_owned(), file_digest(&tmp.join(f))?.hex());
    }
    // state.json last: it vouches for the tensor files by digest.
    let state_path = tmp.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).expect("state serializes");
    std::fs::write(&state_path, json).map_err(io(&state_path))?;
    artifact::publish(&tmp, &final_dir)?;
    prune(root, keep)?;
    Ok(final_dir)
}

const ADAPTER_FILE: &str = "adapter.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

fn step_dirs(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn prune(root: &Path, keep: usize) -> Result<(), CheckpointIoError> {
    let dirs = step_dirs(root);
    for (_, d) in dirs.iter().take(dirs.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(d).map_err(io(d))?;
    }
    Ok(())
}

/// Reads and verifies one checkpoint's state.
pub fn verify(dir: &Path) -> Result<TrainState, CheckpointIoError> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let state: TrainState = serde_json::from_slice(&bytes).map_err(|e| CheckpointIoError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    for f in [ADAPTER_FILE, OPTIMIZER_FILE] {
        let want = state.files.get(f).ok_or_else(|| CheckpointIoError::Invalid {
            path: path.clone(),
            message: format!("no digest recorded for {f}"),
        })?;
        let got = file_digest(&dir.join(f))?.hex();
        if &got != want {
            return Err(CheckpointIoError::Invalid {
                path: dir.join(f),
                message: "sha256 does not match state.json".into(),
            });
        }
    }
    Ok(state)
}

/// The newest checkpoint of these `inputs` that verifies; broken ones are logged and skipped. Checkpoints
/// of other inputs (an earlier attempt with another spec or dataset) are removed: they can never be resumed
/// and would otherwise outrank this run's own in step order.
pub fn latest_valid(root: &Path, inputs: &str) -> Option<(PathBuf, TrainState)> {
    artifact::remove_stale_staging(root);
    let mut found = None;
    for (_, dir) in step_dirs(root).into_iter().rev() {
        match verify(&dir) {
            Ok(state) if state.inputs != inputs => {
                tracing::warn!(checkpoint = %dir.display(), "removing a checkpoint of other inputs (spec or dataset changed)");
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(state) => {
                if found.is_none() {
                    found = Some((dir, state));
                }
            }
            Err(e) => tracing::warn!(checkpoint = %dir.display(), error = %e, "skipping invalid checkpoint"),
        }
    }
    found
}

/// Restores adapter values and optimizer moments from a verified checkpoint.
pub fn restore(dir: &Path, state: &TrainState, lora: &mut LoraStore, opt: &mut AdamW) -> Result<(), CheckpointIoError> {
    let adapter_path = dir.join(ADAPTER_FILE);
    let values = read_tensors(&adapter_path)?;
    lora.load_values(&values)
        .map_err(|message| CheckpointIoError::Invalid {
            path: adapter_path,
            message,
        })?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let moments = read_tensors(&opt_path)?;
    let names: Vec<String> = lora.named().into_iter().map(|(n, _)| n).collect();
    for (i, n) in names.iter().enumerate() {
        let get = |suffix: &str| {
            moments
                .get(&format!("{n}.{suffix}"))
                .ok_or_else(|| CheckpointIoError::Invalid {
                    path: opt_path.clone(),
                    message: format!("{n}.{suffix} missing"),
                })
        };
        let device = opt.m[i].device();
        opt.m[i] = get("exp_avg")?.to_device(device);
        opt.v[i] = get("exp_avg_sq")?.to_device(device);
    }
    opt.t = state.adam_t;
    Ok(())
}
