//! A Llama-family decoder in libtorch, shaped entirely by `config.json` and named after the HF checkpoint.
//!
//! The base weights are frozen (no gradient); LoRA adapters live in a separate [`LoraStore`]. Numerics follow
//! `transformers`: RMSNorm in f32 then cast back, RoPE tables computed in f32, rotate-half layout, attention
//! through `scaled_dot_product_attention` with the grouped-query flag (so KV heads are never materialized
//! per query head). Projections that read the same input run as one GEMM (q|k|v and gate|up).
//!
//! Training never forms the full [tokens, vocab] logits: only positions that carry a label go through the
//! LM head, in chunks, and the cross-entropy gradient of each chunk is computed right away (softmax − one-hot)
//! so no chunk's logits outlive it.

use super::lora::LoraStore;
use super::spec::PROJECTIONS;
use super::weights::{self, Frozen, LoadError};
use crate::hf::{Checkpoint, LlamaConfig};
use tch::{Device, Kind, Tensor};

/// HF module path of a projection: `model.layers.{i}.self_attn.q_proj` or `model.layers.{i}.mlp.up_proj`.
pub fn projection_path(layer: usize, proj: &str) -> String {
    let block = if matches!(proj, "gate_proj" | "up_proj" | "down_proj") {
        "mlp"
    } else {
        "self_attn"
    };
    format!("model.layers.{layer}.{block}.{proj}")
}

/// Index of a projection name in [`PROJECTIONS`].
pub fn projection_index(proj: &str) -> Option<usize> {
    PROJECTIONS.iter().position(|p| *p == proj)
}

/// Logit elements per LM-head chunk: 128 MiB of f32 (256 rows at Llama 3's 128k vocab). Every chunk streams
/// the whole head weight from memory twice (logits, then their gradient), so few large chunks beat
/// cache-sized ones: on the tiny 128k-vocab fixture 4 M-element chunks ran full-sequence steps at 255
/// tokens/s on 2 CPU threads and 32 M-element chunks at 458.
const HEAD_CHUNK_ELEMENTS: i64 = 1 << 25;

/// Projections fused into one GEMM: they read the same input and their outputs are split apart afterwards.
struct Group {
    weight: Frozen,
    /// (index into PROJECTIONS, output features) of each member, in output order.
    members: Vec<(usize, i64)>,
}

struct Layer {
    input_norm: Tensor,
    post_norm: Tensor,
    qkv: Group,
    o: Group,
    gate_up: Group,
    down: Group,
}

pub struct Llama {
    pub config: LlamaConfig,
    /// Activation and dense-weight dtype (bf16 on GPUs, f32 on the CPU).
    pub kind: Kind,
    pub device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
}

/// What one micro-batch contributed: the summed loss over its trained tokens and how many there were.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    pub sum: f64,
    pub tokens: i64,
}

impl Llama {
    /// Loads every base tensor from the (memory-mapped) checkpoint into `kind` on `device`, frozen. With
    /// `nf4`, the seven projections of every layer are quantized (QLoRA); embeddings, norms and the LM head
    /// stay in `kind`.
    pub fn load(ck: &Checkpoint, kind: Kind, device: Device, nf4: bool) -> Result<Self, LoadError> {
        ck.validate_shapes()?;
        let config = ck.config().clone();
        for flag in ["attention_bias", "mlp_bias"] {
            if config.raw.get(flag).and_then(|v| v.as_bool()) == Some(true) {
                return Err(LoadError::Unsupported {
                    dir: ck.dir().to_owned(),
                    message: format!("config.json sets {flag}: projections with biases are not supported"),
                });
            }
        }
        let get = |name: &str| weights::load_owned(ck, name, kind, device);
        let group = |layer: usize, projs: &[&str]| -> Result<Group, LoadError> {
            let names: Vec<String> = projs
                .iter()
                .map(|p| format!("{}.weight", projection_path(layer, p)))
                .collect();
            let members = projs
                .iter()
                .map(|p| {
                    let idx = projection_index(p).expect("known projection");
                    (idx, projection_shape(&config, idx).0)
                })
                .collect();
            Ok(Group {
                weight: Frozen::load_rows(ck, &names, kind, device, nf4)?,
                members,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(Layer {
                input_norm: get(&format!("{p}.input_layernorm.weight"))?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                qkv: group(l, &["q_proj", "k_proj", "v_proj"])?,
                o: group(l, &["o_proj"])?,
                gate_up: group(l, &["gate_proj", "up_proj"])?,
                down: group(l, &["down_proj"])?,
            });
        }
        // Some tied checkpoints still ship lm_head.weight (a copy); the config decides.
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

    /// Bytes of frozen weights on the device.
    pub fn weight_bytes(&self) -> i64 {
        let dense = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as i64;
        let layers: i64 = self
            .layers
            .iter()
            .map(|l| {
                dense(&l.input_norm)
                    + dense(&l.post_norm)
                    + [&l.qkv, &l.o, &l.gate_up, &l.down]
                        .iter()
                        .map(|g| g.weight.bytes())
                        .sum::<i64>()
            })
            .sum();
        layers + dense(&self.embed) + dense(&self.norm) + self.lm_head.as_ref().map_or(0, dense)
    }

    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.square().mean_dim(-1, true, Kind::Float);
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

    /// One fused GEMM for the group, split per member, plus each member's LoRA update.
    fn group(&self, g: &Group, layer: usize, x: &Tensor, lora: Option<&LoraStore>, train: bool) -> Vec<Tensor> {
        let y = x.linear::<Tensor>(&g.weight.weight(self.kind), None);
        let parts = if g.members.len() == 1 {
            vec![y]
        } else {
            let sizes: Vec<i64> = g.members.iter().map(|m| m.1).collect();
            y.split_with_sizes(&sizes, -1)
        };
        let Some(store) = lora else { return parts };
        let projs: Vec<usize> = g.members.iter().map(|m| m.0).collect();
        parts
            .into_iter()
            .zip(store.deltas(x, layer, &projs, self.kind, train))
            .map(|(p, d)| match d {
                Some(d) => p + d,
                None => p,
            })
            .collect()
    }

    /// One decoder layer on [batch, seq, hidden].
    fn layer(&self, l: usize, h: &Tensor, rope: &(Tensor, Tensor), lora: Option<&LoraStore>, train: bool) -> Tensor {
        let (b, s, _) = h.size3().expect("hidden states are [batch, seq, hidden]");
        let c = &self.config;
        let (nh, nkv, hd) = (
            c.num_attention_heads as i64,
            c.num_key_value_heads as i64,
            c.head_dim as i64,
        );
        let layer = &self.layers[l];
        let (cos, sin) = rope;
        let rotate = |t: &Tensor| {
            let halves = t.chunk(2, -1);
            let rotated = Tensor::cat(&[-&halves[1], halves[0].shallow_clone()], -1);
            t * cos + rotated * sin
        };
        let x = self.rms_norm(h, &layer.input_norm);
        let qkv = self.group(&layer.qkv, l, &x, lora, train);
        let q = rotate(&qkv[0].view([b, s, nh, hd]).transpose(1, 2));
        let k = rotate(&qkv[1].view([b, s, nkv, hd]).transpose(1, 2));
        let v = qkv[2].view([b, s, nkv, hd]).transpose(1, 2);
        // Right padding needs no mask: under the causal mask a real token never attends to a later pad.
        let attn = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, true, None, nkv != nh);
        let attn = attn.transpose(1, 2).reshape([b, s, nh * hd]);
        let h = h + &self.group(&layer.o, l, &attn, lora, train)[0];
        let x = self.rms_norm(&h, &layer.post_norm);
        let gu = self.group(&layer.gate_up, l, &x, lora, train);
        let act = gu[0].silu() * &gu[1];
        h + &self.group(&layer.down, l, &act, lora, train)[0]
    }

    fn embed(&self, input_ids: &Tensor) -> Tensor {
        let (b, s) = input_ids.size2().expect("input_ids is [batch, seq]");
        self.embed
            .index_select(0, &input_ids.flatten(0, -1))
            .view([b, s, self.config.hidden_size as i64])
    }

    /// Hidden states [batch, seq, hidden] after the last layer, before the final RMSNorm.
    fn trunk(&self, input_ids: &Tensor, lora: Option<&LoraStore>, train: bool, seed: Option<i64>) -> Tensor {
        let rope = self.rope(input_ids.size()[1]);
        let mut h = self.embed(input_ids);
        for l in 0..self.layers.len() {
            reseed(seed, l);
            h = self.layer(l, &h, &rope, lora, train);
        }
        h
    }

    /// Logits [batch, seq, vocab] in f32 for right-padded `input_ids` (inference and tests).
    pub fn logits(&self, input_ids: &Tensor, lora: Option<&LoraStore>) -> Tensor {
        let h = self.rms_norm(&self.trunk(input_ids, lora, false, None), &self.norm);
        h.linear::<Tensor>(self.lm_head_weight(), None).to_kind(Kind::Float)
    }

    /// Rows of `h` [batch, seq, hidden] whose target is not −100, final-normed, and those targets.
    fn trained_rows(&self, h: &Tensor, targets: &Tensor) -> Option<(Tensor, Tensor)> {
        let flat_t = targets.flatten(0, -1);
        let keep = flat_t.ne(super::data::IGNORE).nonzero().squeeze_dim(1);
        if keep.size()[0] == 0 {
            return None;
        }
        let rows = h.flatten(0, 1).index_select(0, &keep);
        Some((self.rms_norm(&rows, &self.norm), flat_t.index_select(0, &keep)))
    }

    /// Summed cross-entropy of `rows` [n, hidden] against `targets` [n], chunk by chunk; with `grad_scale`,
    /// also the gradient of `grad_scale · loss` with respect to `rows` (no autograd: softmax − one-hot).
    ///
    /// Each chunk's logits are the only large buffer and every step works on it in place (max, exp, sum,
    /// scale), so no further vocab-sized temporaries are allocated.
    fn head_loss(&self, rows: &Tensor, targets: &Tensor, grad_scale: Option<f64>) -> (f64, Option<Tensor>) {
        let w = self.lm_head_weight();
        let vocab = w.size()[0];
        let n = rows.size()[0];
        let chunk = (HEAD_CHUNK_ELEMENTS / vocab).max(8);
        let mut sum = 0.0;
        let mut grads = Vec::new();
        tch::no_grad(|| {
            let rows = rows.detach();
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let t = targets.narrow(0, start, len).unsqueeze(1);
                let mut logits = rows
                    .narrow(0, start, len)
                    .linear::<Tensor>(w, None)
                    .to_kind(Kind::Float);
                let target_logit = logits.gather(1, &t, false);
                let max = logits.amax([-1], true);
                let _ = logits.g_sub_(&max).exp_();
                let total = logits.sum_dim_intlist([-1i64].as_slice(), true, Kind::Float);
                // log-sum-exp = max + log Σ exp(x − max); the loss of a row is that minus its target logit.
                sum += (total.log() + &max - target_logit).sum(Kind::Double).double_value(&[]);
                if let Some(scale) = grad_scale {
                    // softmax · scale, then − scale at the target: the gradient of scale · cross-entropy.
                    let _ = logits.g_mul_(&(total.reciprocal() * scale));
                    let minus = Tensor::full([len, 1], -scale, (Kind::Float, self.device));
                    let _ = logits.scatter_add_(1, &t, &minus);
                    grads.push(logits.to_kind(self.kind).matmul(w));
                }
                start += len;
            }
        });
        let grad = grad_scale.map(|_| {
            if grads.len() == 1 {
                grads.pop().expect("one")
            } else {
                Tensor::cat(&grads, 0)
            }
        });
        (sum, grad)
    }

    /// Summed loss over trained positions without gradients (evaluation). `targets` are already shifted
    /// (targets[t] is the label of token t+1).
    pub fn loss_sum(&self, input_ids: &Tensor, targets: &Tensor, lora: Option<&LoraStore>) -> LossSum {
        tch::no_grad(|| {
            let h = self.trunk(input_ids, lora, false, None);
            match self.trained_rows(&h, targets) {
                None => LossSum::default(),
                Some((rows, t)) => LossSum {
                    sum: self.head_loss(&rows, &t, None).0,
                    tokens: t.size()[0],
                },
            }
        })
    }

    /// Forward and backward of one micro-batch: accumulates `grad_scale ·` d(summed loss)/d(adapter) into the
    /// adapters' gradients and returns the summed loss. With `recompute`, layers run without autograd first
    /// and are recomputed one at a time during the backward pass (activation checkpointing): only each
    /// layer's input is kept. `seed` reseeds dropout per layer so a recomputed layer draws the same masks.
    pub fn forward_backward(
        &self,
        input_ids: &Tensor,
        targets: &Tensor,
        lora: &LoraStore,
        grad_scale: f64,
        recompute: bool,
        seed: i64,
    ) -> LossSum {
        let seed = (lora.dropout() > 0.0).then_some(seed);
        if !recompute {
            let h = self.trunk(input_ids, Some(lora), true, seed);
            return self.head_backward(&h, targets, grad_scale);
        }
        let rope = self.rope(input_ids.size()[1]);
        let mut inputs = Vec::with_capacity(self.layers.len());
        let top = tch::no_grad(|| {
            let mut h = self.embed(input_ids);
            for l in 0..self.layers.len() {
                reseed(seed, l);
                let next = self.layer(l, &h, &rope, Some(lora), true);
                inputs.push(h);
                h = next;
            }
            h
        });
        let top = top.detach().set_requires_grad(true);
        let loss = self.head_backward(&top, targets, grad_scale);
        if loss.tokens == 0 {
            return loss;
        }
        let mut g = top.grad();
        for l in (0..self.layers.len()).rev() {
            // The first layer's input is the frozen embedding: no gradient needed below it.
            let x = inputs[l].detach().set_requires_grad(l > 0);
            reseed(seed, l);
            let out = self.layer(l, &x, &rope, Some(lora), true);
            (out * &g).sum(Kind::Float).backward();
            if l > 0 {
                g = x.grad();
            }
        }
        loss
    }

    /// The frozen part of a training step on its own, for the benchmark's ceiling figure: the base forward,
    /// the LM head's loss and gradient, and the input-gradient backward through layers 1.., with no
    /// adapters and no optimizer. Layer 0 runs forward only (a LoRA step also back-propagates through it to
    /// reach its adapters), so this is strictly less work than any LoRA step on the same GEMMs: its rate
    /// bounds what such a step can reach from above.
    pub fn frozen_forward_backward(&self, input_ids: &Tensor, targets: &Tensor) -> LossSum {
        let rope = self.rope(input_ids.size()[1]);
        let mut h = tch::no_grad(|| self.layer(0, &self.embed(input_ids), &rope, None, false));
        // With one layer nothing below the head needs a gradient; the head's own work still runs.
        h = h.detach().set_requires_grad(true);
        for l in 1..self.layers.len() {
            h = self.layer(l, &h, &rope, None, true);
        }
        self.head_backward(&h, targets, 1.0)
    }

    /// The summed loss of the trained rows of `h`, and `grad_scale ·` its gradient handed to autograd for
    /// whatever `h` was computed from. No trained rows: no backward, zero tokens.
    fn head_backward(&self, h: &Tensor, targets: &Tensor, grad_scale: f64) -> LossSum {
        let Some((rows, t)) = self.trained_rows(h, targets) else {
            return LossSum::default();
        };
        let (sum, grad) = self.head_loss(&rows, &t, Some(grad_scale));
        // d/d rows of sum(rows · g) is g: hands the head's gradient to autograd for the trunk.
        (rows * grad.expect("asked for")).sum(Kind::Float).backward();
        LossSum {
            sum,
            tokens: t.size()[0],
        }
    }

    /// Greedy continuation without a KV cache: short answers from small models in tests and smoke checks.
    pub fn greedy(&self, prompt: &[i64], max_new: usize, stop: &[i64], lora: Option<&LoraStore>) -> Vec<i64> {
        let mut ids = prompt.to_vec();
        let mut out = Vec::new();
        tch::no_grad(|| {
            for _ in 0..max_new {
                let input = Tensor::from_slice(&ids).to_device(self.device).unsqueeze(0);
                let h = self.trunk(&input, lora, false, None).select(1, -1);
                let h = self.rms_norm(&h, &self.norm);
                let next = h
                    .linear::<Tensor>(self.lm_head_weight(), None)
                    .argmax(-1, false)
                    .int64_value(&[0]);
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

/// (out, in) of projection `idx` of any layer, from the config.
pub fn projection_shape(c: &LlamaConfig, idx: usize) -> (i64, i64) {
    let (h, i) = (c.hidden_size as i64, c.intermediate_size as i64);
    let (q, kv) = (
        (c.num_attention_heads * c.head_dim) as i64,
        (c.num_key_value_heads * c.head_dim) as i64,
    );
    match PROJECTIONS[idx] {
        "q_proj" => (q, h),
        "k_proj" | "v_proj" => (kv, h),
        "o_proj" => (h, q),
        "gate_proj" | "up_proj" => (i, h),
        _ => (h, i),
    }
}

/// Dropout draws depend only on (seed, layer), so a layer recomputed in the backward pass sees the same masks.
fn reseed(seed: Option<i64>, layer: usize) {
    if let Some(s) = seed {
        tch::manual_seed(s.wrapping_mul(1_000_003).wrapping_add(layer as i64));
    }
}
