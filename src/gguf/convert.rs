//! Hugging Face Llama checkpoint → one or more GGUF files in a single pass: each source tensor is read
//! once from the memory map, widened to f32 in row chunks, and every requested output quantizes the
//! same chunk — so peak memory is a handful of chunks, not a tensor or a model.

use super::GgufError;
use super::file::{TensorInfo, Value, Writer, encode_header};
use super::mix::{Mix, layer_of, tensor_type};
use super::tokenizer::tokenizer_metadata;
use super::types::GgmlType;
use crate::hf::{Checkpoint, Dtype, LlamaConfig, RopeScaling, TensorView};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

/// Values converted per parallel work item (a few MiB of f32).
const CHUNK_VALUES: usize = 1 << 20;

/// HF tensor name → GGUF name; None for tensors llama.cpp does not load.
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_owned());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match tail {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}.weight"))
}

/// Source row of output row `r` after the Q/K permutation (rotate-half → interleaved pairs) with `n_head` heads.
pub fn permuted_source_row(r: usize, rows: usize, n_head: usize) -> usize {
    let per_head = rows / n_head;
    let half = per_head / 2;
    let (h, within) = (r / per_head, r % per_head);
    let (i, j) = (within / 2, within % 2);
    h * per_head + j * half + i
}

enum Source<'a> {
    View {
        view: TensorView<'a>,
        permute_heads: Option<usize>,
    },
    Owned(Vec<f32>),
}

struct Planned<'a> {
    name: String,
    /// GGUF order: row length first.
    dims: Vec<u64>,
    source: Source<'a>,
}

impl Planned<'_> {
    fn row_len(&self) -> usize {
        self.dims[0] as usize
    }

    fn n_rows(&self) -> usize {
        self.dims[1..].iter().product::<u64>() as usize
    }

    /// Widen rows [first, first + out.len()/row_len) to f32.
    fn rows_f32(&self, first: usize, out: &mut [f32]) {
        let n = self.row_len();
        match &self.source {
            Source::Owned(v) => out.copy_from_slice(&v[first * n..first * n + out.len()]),
            Source::View { view, permute_heads } => {
                let size = view.dtype.size();
                for (k, dst) in out.chunks_exact_mut(n).enumerate() {
                    let r = first + k;
                    let src = permute_heads.map_or(r, |h| permuted_source_row(r, self.n_rows(), h));
                    let bytes = &view.data[src * n * size..(src + 1) * n * size];
                    widen(view.dtype, bytes, dst);
                }
            }
        }
    }
}

fn widen(dtype: Dtype, bytes: &[u8], dst: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                *d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                *d = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
    }
}

fn plan(ckpt: &Checkpoint) -> Result<Vec<Planned<'_>>, GgufError> {
    let cfg = ckpt.config();
    let mut out = Vec::new();
    if matches!(cfg.rope_scaling, Some(RopeScaling::Llama3 { .. })) {
        let f = cfg.rope_scaling_factors();
        out.push(Planned {
            name: "rope_freqs.weight".into(),
            dims: vec![f.len() as u64],
            source: Source::Owned(f),
        });
    }
    for hf in ckpt.names() {
        if hf.ends_with("rotary_emb.inv_freq") {
            continue;
        }
        let name = gguf_name(hf).ok_or_else(|| GgufError::UnknownTensor { name: hf.to_owned() })?;
        let view = ckpt.tensor(hf)?;
        let permute_heads = if name.ends_with("attn_q.weight") {
            Some(cfg.num_attention_heads)
        } else if name.ends_with("attn_k.weight") {
            Some(cfg.num_key_value_heads)
        } else {
            None
        };
        if let Some(h) = permute_heads
            && (view.shape.len() != 2 || view.shape[0] % (2 * h) != 0)
        {
            return Err(GgufError::Unsupported(format!(
                "{hf}: shape {:?} cannot be split into {h} heads of row pairs",
                view.shape
            )));
        }
        let dims: Vec<u64> = view.shape.iter().rev().map(|&d| d as u64).collect();
        if dims.is_empty() || dims.len() > super::file::MAX_DIMS {
            return Err(GgufError::Unsupported(format!(
                "{hf}: {}-D tensors are not supported",
                dims.len()
            )));
        }
        out.push(Planned {
            name,
            dims,
            source: Source::View { view, permute_heads },
        });
    }
    // llama-quantize's order: non-layer tensors first, then by layer, names sorted within each group.
    out.sort_by(|a, b| {
        let key = |p: &Planned| layer_of(&p.name).map_or(-1, |l| l as i64);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// Architecture metadata in the converter's order, without the tokenizer and the two trailing keys.
pub fn model_kv(cfg: &LlamaConfig, name: &str, mix: Mix) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.type".into(), Value::String("model".into())),
        ("general.name".into(), Value::String(name.into())),
        ("llama.block_count".into(), u(cfg.num_hidden_layers)),
        ("llama.context_length".into(), u(cfg.max_position_embeddings)),
        ("llama.embedding_length".into(), u(cfg.hidden_size)),
        ("llama.feed_forward_length".into(), u(cfg.intermediate_size)),
        ("llama.attention.head_count".into(), u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv".into(), u(cfg.num_key_value_heads)),
        ("llama.rope.freq_base".into(), Value::F32(cfg.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.attention.key_length".into(), u(cfg.head_dim)),
        ("llama.attention.value_length".into(), u(cfg.head_dim)),
    ];
    if !mix.is_quantized() {
        kv.push(("general.file_type".into(), Value::U32(mix.file_type())));
    }
    kv.push(("llama.vocab_size".into(), u(cfg.vocab_size)));
    kv.push(("llama.rope.dimension_count".into(), u(cfg.head_dim)));
    if !mix.is_quantized() {
        kv.push(("general.quantization_version".into(), Value::U32(2)));
    }
    kv
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputSummary {
    pub quantization: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
    pub tensor_types: std::collections::BTreeMap<String, usize>,
}

pub struct Request {
    pub mix: Mix,
    pub path: PathBuf,
}

/// Convert `ckpt` into every requested file. `on_progress` receives converted source values.
pub fn convert(
    ckpt: &Checkpoint,
    model_name: &str,
    requests: &[Request],
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<OutputSummary>, GgufError> {
    let cfg = ckpt.config();
    ckpt.validate_shapes()?;
    let planned = plan(ckpt)?;
    let tied = !planned.iter().any(|p| p.name == "output.weight");
    let tok_kv = tokenizer_metadata(ckpt.dir(), cfg.vocab_size)?;

    struct Out {
        types: Vec<GgmlType>,
        writer: Option<Writer>,
        path: PathBuf,
        mix: Mix,
    }
    let mut outs: Vec<Out> = Vec::new();
    for r in requests {
        let types: Vec<GgmlType> = planned
            .iter()
            .map(|p| tensor_type(r.mix, &p.name, p.dims.len(), p.dims[0], cfg.num_hidden_layers, tied))
            .collect();
        let mut kv = model_kv(cfg, model_name, r.mix);
        kv.extend(tok_kv.iter().cloned());
        if r.mix.is_quantized() {
            kv.push(("general.quantization_version".into(), Value::U32(2)));
            kv.push(("general.file_type".into(), Value::U32(r.mix.file_type())));
        }
        let mut infos: Vec<TensorInfo> = planned
            .iter()
            .zip(&types)
            .map(|(p, &t)| TensorInfo {
                name: p.name.clone(),
                dims: p.dims.clone(),
                ggml_type: t,
                offset: 0,
            })
            .collect();
        let header = encode_header(&kv, &mut infos);
        let writer = Writer::create(&r.path, &header).map_err(|source| GgufError::Io {
            path: r.path.clone(),
            source,
        })?;
        outs.push(Out {
            types,
            writer: Some(writer),
            path: r.path.clone(),
            mix: r.mix,
        });
    }

    let result = (|| -> Result<(), GgufError> {
        for (ti, p) in planned.iter().enumerate() {
            let n = p.row_len();
            let rows_per_chunk = (CHUNK_VALUES / n).max(1);
            let n_rows = p.n_rows();
            let chunk_starts: Vec<usize> = (0..n_rows).step_by(rows_per_chunk).collect();
            // Batches of chunks bound memory; within a batch chunks run in parallel and are written in order.
            let batch = rayon::current_num_threads().max(1) * 2;
            for starts in chunk_starts.chunks(batch) {
                let encoded: Vec<Vec<Vec<u8>>> = starts
                    .par_iter()
                    .map(|&first| {
                        let rows = rows_per_chunk.min(n_rows - first);
                        let mut f = vec![0.0f32; rows * n];
                        p.rows_f32(first, &mut f);
                        let enc = outs
                            .iter()
                            .map(|o| {
                                let t = o.types[ti];
                                let row_bytes = t.row_bytes(n as u64).unwrap_or(0) as usize;
                                let mut buf = vec![0u8; row_bytes * rows];
                                let quantize = t.quantizer().unwrap_or(super::quants::quantize_row_f32);
                                for (src, dst) in f.chunks_exact(n).zip(buf.chunks_exact_mut(row_bytes)) {
                                    quantize(src, dst);
                                }
                                buf
                            })
                            .collect();
                        on_progress((rows * n) as u64);
                        enc
                    })
                    .collect();
                for chunk in encoded {
                    for (o, bytes) in outs.iter_mut().zip(chunk) {
                        if let Some(w) = o.writer.as_mut() {
                            w.data(&bytes).map_err(|source| GgufError::Io {
                                path: o.path.clone(),
                                source,
                            })?;
                        }
                    }
                }
            }
            for o in outs.iter_mut() {
                if let Some(w) = o.writer.as_mut() {
                    w.end_tensor().map_err(|source| GgufError::Io {
                        path: o.path.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for o in outs.iter_mut() {
            if let Some(w) = o.writer.take() {
                w.abandon();
            }
        }
        return Err(e);
    }
    let mut summaries = Vec::new();
    for mut o in outs {
        let Some(w) = o.writer.take() else { continue };
        let (size_bytes, sha256) = w.finish().map_err(|source| GgufError::Io {
            path: o.path.clone(),
            source,
        })?;
        let mut hist = std::collections::BTreeMap::new();
        for t in &o.types {
            *hist.entry(t.name().to_owned()).or_insert(0) += 1;
        }
        summaries.push(OutputSummary {
            quantization: o.mix.name().into(),
            path: o.path,
            size_bytes,
            sha256,
            tensor_types: hist,
        });
    }
    Ok(summaries)
}

/// Total source values, for progress bars.
pub fn total_values(ckpt: &Checkpoint) -> u64 {
    ckpt.names()
        .filter_map(|n| ckpt.tensor(n).ok())
        .map(|v| v.numel() as u64)
        .sum()
}

/// Wall-clock helper for summaries.
pub fn elapsed_s(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_numpy_reshape_swapaxes() {
        // rows = 8, 2 heads: per head rows [0,1,2,3] → [0,2,1,3].
        let got: Vec<usize> = (0..8).map(|r| permuted_source_row(r, 8, 2)).collect();
        assert_eq!(got, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        let got: Vec<usize> = (0..6).map(|r| permuted_source_row(r, 6, 1)).collect();
        assert_eq!(got, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn names_map_and_unknown_are_none() {
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight").as_deref(),
            Some("blk.12.ffn_down.weight")
        );
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight"), None);
        assert_eq!(gguf_name("vision_tower.weight"), None);
    }
}
