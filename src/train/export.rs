//! Outputs other tools load: a PEFT adapter, and the merged model as a Hugging Face checkpoint.

use super::checkpoint::CheckpointIoError;
use super::lora::LoraStore;
use super::model::projection_path;
use super::spec::PROJECTIONS;
use super::weights;
use crate::artifact::{self, io};
use crate::hf::Checkpoint;
use std::path::Path;
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

fn torch(path: &Path) -> impl FnOnce(tch::TchError) -> CheckpointIoError + '_ {
    move |source| CheckpointIoError::Torch {
        path: path.to_owned(),
        source,
    }
}

/// Writes `adapter_config.json` + `adapter_model.safetensors` (f32, PEFT names) into `dest`, atomically.
pub fn save_peft(
    dest: &Path,
    lora: &LoraStore,
    base_model: &str,
    revision: Option<&str>,
) -> Result<(), CheckpointIoError> {
    let tmp = artifact::staging(dest)?;
    let tensors: Vec<(String, Tensor)> = lora
        .named()
        .into_iter()
        .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).to_kind(Kind::Float)))
        .collect();
    let st = tmp.join("adapter_model.safetensors");
    Tensor::write_safetensors(&tensors, &st).map_err(torch(&st))?;
    let cfg = tmp.join("adapter_config.json");
    let json = serde_json::to_vec_pretty(&lora.peft_config(base_model, revision)).expect("config serializes");
    std::fs::write(&cfg, json).map_err(io(&cfg))?;
    Ok(artifact::publish(&tmp, dest)?)
}

/// Which (layer, projection) a base tensor name is, for projections that have an adapter.
fn adapted(name: &str, lora: &LoraStore, layers: usize) -> Option<(usize, &'static str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let layer: usize = rest.split('.').next()?.parse().ok()?;
    if layer >= layers {
        return None;
    }
    PROJECTIONS
        .iter()
        .enumerate()
        .find(|(_, p)| name == format!("{}.weight", projection_path(layer, p)))
        .filter(|(idx, _)| lora.adapter(layer, *idx).is_some())
        .map(|(_, p)| (layer, *p))
}

/// Shard boundaries: consecutive tensors until a shard would pass `limit` bytes. Pure.
fn plan_shards(sizes: &[usize], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        if bytes + s > limit && i > start {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < sizes.len() || out.is_empty() {
        out.push(start..sizes.len());
    }
    out
}

/// Writes base + scaling·B·A as a Hugging Face checkpoint in the base's dtype: safetensors shards with an
/// index, plus config and tokenizer files from the base folder, with `chat_template` (the template the run
/// trained with) as its chat template, so every GGUF made from it — and the server that loads one — renders
/// prompts exactly as training did. The base comes from the checkpoint (the
/// original weights, also for a run that trained on an NF4 copy); each sum is formed in f32 on the CPU and
/// shards are written as they fill, so memory stays at one shard beyond the mapped base.
pub fn save_merged(
    dest: &Path,
    base: &Checkpoint,
    lora: &LoraStore,
    chat_template: &str,
) -> Result<(), CheckpointIoError> {
    let tmp = artifact::staging(dest)?;
    let layers = base.config().num_hidden_layers;
    let names = base.names_in_file_order();
    let invalid = |e: crate::hf::CheckpointError| CheckpointIoError::Invalid {
        path: base.dir().to_owned(),
        message: e.to_string(),
    };
    let sizes = names
        .iter()
        .map(|n| base.tensor(n).map(|v| v.data.len()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let shards = plan_shards(&sizes, SHARD_BYTES);
    let count = shards.len();
    let file_of = |i: usize| {
        if count == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        }
    };
    let mut weight_map = serde_json::Map::new();
    for (i, range) in shards.into_iter().enumerate() {
        let mut tensors = Vec::with_capacity(range.len());
        for &name in &names[range] {
            let view = base.tensor(name).map_err(invalid)?;
            let merged = match adapted(name, lora, layers).and_then(|(l, p)| lora.merged_delta(l, p)) {
                Some(delta) => {
                    let orig = weights::to_tensor(&view, Kind::Float, Device::Cpu).map_err(torch(base.dir()))?;
                    (orig + delta.to_device(Device::Cpu)).to_kind(weights::kind_of(view.dtype))
                }
                None => {
                    weights::to_tensor(&view, weights::kind_of(view.dtype), Device::Cpu).map_err(torch(base.dir()))?
                }
            };
            weight_map.insert(name.to_owned(), file_of(i).into());
            tensors.push((name.to_owned(), merged));
        }
        let path = tmp.join(file_of(i));
        Tensor::write_safetensors(&tensors, &path).map_err(torch(&path))?;
    }
    if count > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": sizes.iter().sum::<usize>()}, "weight_map": weight_map});
        let path = tmp.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).expect("index serializes")).map_err(io(&path))?;
    }
    for f in SIDE_FILES {
        let src = base.dir().join(f);
        if src.is_file() {
            std::fs::copy(&src, tmp.join(f)).map_err(io(&src))?;
        }
    }
    set_chat_template(&tmp, chat_template)?;
    Ok(artifact::publish(&tmp, dest)?)
}

/// Makes `template` the folder's chat template. A base whose own template it already is keeps its files as
/// they are; otherwise it goes into chat_template.jinja and tokenizer_config.json loses its own
/// `chat_template` (which readers prefer over the file).
pub fn set_chat_template(dir: &Path, template: &str) -> Result<(), CheckpointIoError> {
    let own = crate::chat::ChatTemplate::from_model_dir(dir).ok();
    if own.as_ref().is_some_and(|t| t.source() == template) {
        return Ok(());
    }
    let config_path = dir.join("tokenizer_config.json");
    if let Ok(bytes) = std::fs::read(&config_path)
        && let Ok(serde_json::Value::Object(mut config)) = serde_json::from_slice(&bytes)
        && config.remove("chat_template").is_some()
    {
        let text = serde_json::to_vec_pretty(&config).expect("config serializes");
        std::fs::write(&config_path, text).map_err(io(&config_path))?;
    }
    let path = dir.join("chat_template.jinja");
    std::fs::write(&path, template).map_err(io(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shards_fill_up_to_the_limit() {
        assert_eq!(super::plan_shards(&[4, 4, 4, 9, 1], 8), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(super::plan_shards(&[1, 1], 8), vec![0..2]);
        assert_eq!(super::plan_shards(&[], 8), vec![0..0]);
    }
}
