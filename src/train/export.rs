//! Outputs other tools load: a PEFT adapter, and the merged model as a Hugging Face checkpoint.

use super::checkpoint::{CheckpointIoError, sha256_file};
use super::lora::LoraStore;
use super::model::{PROJECTIONS, projection_path};
use super::weights;
use crate::hf::Checkpoint;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Files that make a model folder usable by tokenizers and converters, copied next to merged weights.
const SIDE_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Merged shards stay well under the 5 GB many tools assume per file.
const SHARD_BYTES: usize = 2 << 30;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointIoError + '_ {
    move |source| CheckpointIoError::Io {
        path: path.to_owned(),
        source,
    }
}

fn torch(path: &Path) -> impl FnOnce(tch::TchError) -> CheckpointIoError + '_ {
    move |source| CheckpointIoError::Torch {
        path: path.to_owned(),
        source,
    }
}

/// A fresh temporary sibling of `dest`; `finish` renames it into place (replacing an older export).
fn staging(dest: &Path) -> Result<PathBuf, CheckpointIoError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    Ok(tmp)
}

fn finish(tmp: &Path, dest: &Path) -> Result<(), CheckpointIoError> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io(dest))?;
    }
    std::fs::rename(tmp, dest).map_err(io(dest))
}

/// A folder's digest: sha256 over "name sha256\n" of each file, sorted by name.
pub fn dir_digest(dir: &Path) -> Result<String, CheckpointIoError> {
    use sha2::{Digest, Sha256};
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for p in names {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        h.update(format!("{name} {}\n", sha256_file(&p)?));
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes `adapter_config.json` + `adapter_model.safetensors` (f32, PEFT names) into `dest`.
pub fn save_peft(dest: &Path, lora: &LoraStore, base_model: &str) -> Result<(), CheckpointIoError> {
    let tmp = staging(dest)?;
    let tensors: Vec<(String, Tensor)> = lora
        .named()
        .into_iter()
        .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).to_kind(Kind::Float)))
        .collect();
    let st = tmp.join("adapter_model.safetensors");
    Tensor::write_safetensors(&tensors, &st).map_err(torch(&st))?;
    let cfg = tmp.join("adapter_config.json");
    let json = serde_json::to_vec_pretty(&lora.peft_config(base_model)).expect("config serializes");
    std::fs::write(&cfg, json).map_err(io(&cfg))?;
    finish(&tmp, dest)
}

/// Which (layer, projection) a base tensor name belongs to, for projections that have an adapter.
fn adapted(name: &str, lora: &LoraStore, layers: usize) -> Option<(usize, &'static str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let layer: usize = rest.split('.').next()?.parse().ok()?;
    if layer >= layers {
        return None;
    }
    PROJECTIONS
        .iter()
        .find(|p| name == format!("{}.weight", projection_path(layer, p)))
        .filter(|p| lora.adapter(layer, p).is_some())
        .map(|p| (layer, *p))
}

/// Writes base + scaling·B·A as a Hugging Face checkpoint in the base's dtype: safetensors shards with an
/// index, plus config and tokenizer files from the base folder. The sum is formed in f32 on the CPU, one
/// tensor at a time, so memory stays at one tensor beyond the mapped base.
pub fn save_merged(dest: &Path, base: &Checkpoint, lora: &LoraStore) -> Result<(), CheckpointIoError> {
    let tmp = staging(dest)?;
    let layers = base.config().num_hidden_layers;
    let mut shards: Vec<Vec<(String, Tensor)>> = vec![Vec::new()];
    let mut shard_bytes = 0usize;
    for name in base.names_in_file_order() {
        let view = base.tensor(name).map_err(|e| CheckpointIoError::Invalid {
            path: base.dir().to_owned(),
            message: e.to_string(),
        })?;
        let bytes = view.data.len();
        let orig = weights::to_tensor(&view, Kind::Float, Device::Cpu).map_err(torch(base.dir()))?;
        let merged = match adapted(name, lora, layers).and_then(|(l, p)| lora.merged_delta(l, p)) {
            Some(delta) => orig + delta.to_device(Device::Cpu),
            None => orig,
        };
        let out_kind = weights::kind_of(view.dtype);
        if shard_bytes + bytes > SHARD_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shard_bytes += bytes;
        shards.last_mut().expect("one shard exists").push((name.to_owned(), merged.to_kind(out_kind)));
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        };
        for (name, t) in shard {
            weight_map.insert(name.clone(), file.clone().into());
            total += t.numel() * t.kind().elt_size_in_bytes();
        }
        let path = tmp.join(&file);
        Tensor::write_safetensors(shard, &path).map_err(torch(&path))?;
    }
    if n > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = tmp.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).expect("index serializes")).map_err(io(&path))?;
    }
    for f in SIDE_FILES {
        let src = base.dir().join(f);
        if src.is_file() {
            std::fs::copy(&src, tmp.join(f)).map_err(io(&src))?;
        }
    }
    finish(&tmp, dest)
}
