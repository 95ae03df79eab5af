//! A Llama-family decoder in libtorch, shaped entirely by `config.json` and named after the HF checkpoint.
//!
//! The base weights are frozen tensors (no gradient); LoRA adapters live in a separate [`LoraStore`] and are
//! attached to the projections named in `target_modules`. Numerics follow `transformers`: RMSNorm in f32 then
//! cast back, RoPE tables computed in f32, rotate-half layout, attention through `scaled_dot_product_attention`
//! with the grouped-query flag (so KV heads are never materialized per query head).

use super::lora::LoraStore;
use super::weights::{self, LoadError};
use crate::hf::{Checkpoint, LlamaConfig};
use tch::{Device, Kind, Tensor};

/// The seven projections LoRA can target, in the order HF lists them in a layer.
pub const PROJECTIONS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// HF module path of a projection: `model.layers.{i}.self_attn.q_proj` or `model.layers.{i}.mlp.up_proj`.
pub fn projection_path(layer: usize, proj: &str) -> String {
    let block = if matches!(proj, "gate_proj" | "up_proj" | "down_proj") {
        "mlp"
    } else {
        "self_attn"
    };
    format!("model.layers.{layer}.{block}.{proj}")
}

struct Layer {
    input_norm: Tensor,
    post_norm: Tensor,
    /// Base weights by projection, in [`PROJECTIONS`] order.
    proj: Vec<Tensor>,
}

pub struct Llama {
    pub config: LlamaConfig,
    pub kind: Kind,
    pub device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
}

impl Llama {
    /// Loads every base tensor from the (memory-mapped) checkpoint into `kind` on `device`, frozen.
    pub fn load(ck: &Checkpoint, kind: Kind, device: Device) -> Result<Self, LoadError> {
        ck.validate_shapes()?;
        let config = ck.config().clone();
        let get = |name: &str| weights::load(ck, name, kind, device);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let proj = PROJECTIONS
                .iter()
                .map(|name| get(&format!("{}.weight", projection_path(l, name))))
                .collect::<Result<Vec<_>, _>>()?;
            layers.push(Layer {
                input_norm: get(&format!("{p}.input_layernorm.weight"))?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                proj,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(get("lm_head.weight")?)
        };
        let inv_freq = Tensor::from_slice(&config.rope_inv_freq()).to_device(device);
        Ok(Llama {
            embed: get("model.embed_tokens.weight")?,
            norm: get("model.norm.weight")?,
            layers,
            lm_head,
            inv_freq,
            config,
            kind,
            device,
        })
    }

    /// The frozen base weight of one projection (for merging and shape queries).
    pub fn base_weight(&self, layer: usize, proj: &str) -> Option<&Tensor> {
        let idx = PROJECTIONS.iter().position(|p| *p == proj)?;
        self.layers.get(layer).map(|l| &l.proj[idx])
    }

    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.config.rms_norm_eps).rsqrt();
        weight * normed.to_kind(self.kind)
    }

    /// cos/sin tables [seq, head_dim] for positions 0..seq, in f32 then cast (as transformers does).
    fn rope(&self, seq: i64) -> (Tensor, Tensor) {
        let pos = Tensor::arange(seq, (Kind::Float, self.device));
        let freqs = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }

    fn project(&self, x: &Tensor, layer: usize, idx: usize, lora: Option<&LoraStore>, train: bool) -> Tensor {
        let base = x.linear::<Tensor>(&self.layers[layer].proj[idx], None);
        match lora.and_then(|s| s.adapter(layer, PROJECTIONS[idx])) {
            Some(ad) => base + ad.delta(x, self.kind, train),
            None => base,
        }
    }

    /// Final hidden states [batch, seq, hidden] (after the last RMSNorm) for right-padded `input_ids`.
    /// Right padding needs no mask: under the causal mask a real token never attends to a later pad.
    pub fn hidden(&self, input_ids: &Tensor, lora: Option<&LoraStore>, train: bool) -> Tensor {
        let (b, s) = input_ids.size2().expect("input_ids is [batch, seq]");
        let c = &self.config;
        let (nh, nkv, hd) = (
            c.num_attention_heads as i64,
            c.num_key_value_heads as i64,
            c.head_dim as i64,
        );
        let (cos, sin) = self.rope(s);
        let rotate = |t: &Tensor| {
            let halves = t.chunk(2, -1);
            let rotated = Tensor::cat(&[-&halves[1], halves[0].shallow_clone()], -1);
            t * &cos + rotated * &sin
        };
        let mut h = self
            .embed
            .index_select(0, &input_ids.flatten(0, -1))
            .view([b, s, c.hidden_size as i64]);
        for (l, layer) in self.layers.iter().enumerate() {
            let x = self.rms_norm(&h, &layer.input_norm);
            let q = self.project(&x, l, 0, lora, train).view([b, s, nh, hd]).transpose(1, 2);
            let k = self.project(&x, l, 1, lora, train).view([b, s, nkv, hd]).transpose(1, 2);
            let v = self.project(&x, l, 2, lora, train).view([b, s, nkv, hd]).transpose(1, 2);
            let (q, k) = (rotate(&q), rotate(&k));
            let attn = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, true, None, nkv != nh);
            let attn = attn.transpose(1, 2).reshape([b, s, nh * hd]);
            h = h + self.project(&attn, l, 3, lora, train);
            let x = self.rms_norm(&h, &layer.post_norm);
            let gate = self.project(&x, l, 4, lora, train).silu();
            let up = self.project(&x, l, 5, lora, train);
            h = h + self.project(&(gate * up), l, 6, lora, train);
        }
        self.rms_norm(&h, &self.norm)
    }

    /// Logits [batch, seq, vocab] in f32.
    pub fn logits(&self, input_ids: &Tensor, lora: Option<&LoraStore>) -> Tensor {
        let h = self.hidden(input_ids, lora, false);
        h.linear::<Tensor>(self.lm_head_weight(), None).to_kind(Kind::Float)
    }

    /// Summed next-token cross-entropy over positions whose target is not −100, and how many there were.
    /// `targets` are already shifted (targets[t] is the label of token t+1). The LM head runs only on those
    /// positions: with assistant-only labels most rows of the vocab-sized logits would be thrown away.
    pub fn loss_sum(&self, input_ids: &Tensor, targets: &Tensor, lora: Option<&LoraStore>, train: bool) -> (Tensor, i64) {
        let h = self.hidden(input_ids, lora, train);
        let flat_t = targets.flatten(0, -1);
        let keep = flat_t.ne(-100).nonzero().squeeze_dim(1);
        let n = keep.size()[0];
        if n == 0 {
            return (Tensor::zeros([], (Kind::Float, self.device)), 0);
        }
        let rows = h.flatten(0, 1).index_select(0, &keep);
        let logits = rows.linear::<Tensor>(self.lm_head_weight(), None).to_kind(Kind::Float);
        let loss = logits.cross_entropy_loss::<Tensor>(&flat_t.index_select(0, &keep), None, tch::Reduction::Sum, -100, 0.0);
        (loss, n)
    }

    /// Greedy continuation without a KV cache: short answers from small models in tests and smoke checks.
    pub fn greedy(&self, prompt: &[i64], max_new: usize, stop: &[i64], lora: Option<&LoraStore>) -> Vec<i64> {
        let mut ids = prompt.to_vec();
        let mut out = Vec::new();
        tch::no_grad(|| {
            for _ in 0..max_new {
                let input = Tensor::from_slice(&ids).to_device(self.device).unsqueeze(0);
                let h = self.hidden(&input, lora, false);
                let last = h.select(1, -1);
                let next = last.linear::<Tensor>(self.lm_head_weight(), None).argmax(-1, false).int64_value(&[0]);
                if stop.contains(&next) {
                    break;
                }
                ids.push(next);
                out.push(next);
            }
        });
        out
    }
}
