//! LoRA adapters: trainable low-rank updates kept apart from the frozen base, named as PEFT names them.

use super::model::{Llama, projection_index, projection_path, projection_shape};
use super::spec::{PROJECTIONS, lora_scaling};
use crate::api::training_run::LoraSpec;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// One adapter: A [r, in] and B [out, r], kept in f32 whatever the base dtype so AdamW's small updates survive.
pub struct Adapter {
    pub a: Tensor,
    pub b: Tensor,
}

pub struct LoraStore {
    pub spec: LoraSpec,
    scaling: f64,
    layers: usize,
    /// Indexed by `layer * 7 + projection`; `None` where the projection is not targeted.
    adapters: Vec<Option<Adapter>>,
}

/// PEFT's tensor names, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
pub fn peft_name(layer: usize, proj: &str, which: char) -> String {
    format!("base_model.model.{}.lora_{which}.weight", projection_path(layer, proj))
}

impl LoraStore {
    /// Fresh adapters: A ~ kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in), and B = 0 (so training starts at
    /// the base model), as PEFT initializes them. Draws from libtorch's generator: seed it first.
    pub fn new(model: &Llama, spec: &LoraSpec) -> Self {
        let layers = model.config.num_hidden_layers;
        let r = i64::from(spec.r);
        let mut adapters = Vec::with_capacity(layers * PROJECTIONS.len());
        for _ in 0..layers {
            for (idx, proj) in PROJECTIONS.iter().enumerate() {
                if !spec.target_modules.iter().any(|m| m == proj) {
                    adapters.push(None);
                    continue;
                }
                let (out, inp) = projection_shape(&model.config, idx);
                let bound = 1.0 / (inp as f64).sqrt();
                let opts = (Kind::Float, model.device);
                let a = Tensor::empty([r, inp], opts)
                    .uniform_(-bound, bound)
                    .set_requires_grad(true);
                let b = Tensor::zeros([out, r], opts).set_requires_grad(true);
                adapters.push(Some(Adapter { a, b }));
            }
        }
        LoraStore {
            scaling: lora_scaling(spec),
            spec: spec.clone(),
            layers,
            adapters,
        }
    }

    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    pub fn dropout(&self) -> f64 {
        self.spec.dropout
    }

    pub fn adapter(&self, layer: usize, proj: usize) -> Option<&Adapter> {
        self.adapters.get(layer * PROJECTIONS.len() + proj)?.as_ref()
    }

    /// scaling · B(A(dropout(x))) for each projection in `projs` that has an adapter, in the activation dtype.
    /// Without dropout the A matrices of projections sharing `x` (q|k|v, gate|up) run as one GEMM.
    pub fn deltas(&self, x: &Tensor, layer: usize, projs: &[usize], kind: Kind, train: bool) -> Vec<Option<Tensor>> {
        let ads: Vec<Option<&Adapter>> = projs.iter().map(|&p| self.adapter(layer, p)).collect();
        let present: Vec<&Adapter> = ads.iter().flatten().copied().collect();
        if present.is_empty() {
            return ads.iter().map(|_| None).collect();
        }
        let dropout = train && self.spec.dropout > 0.0;
        let r = i64::from(self.spec.r);
        // Scaling is applied on the narrow [tokens, r] side: r/out times fewer multiplications.
        let down: Vec<Tensor> = if dropout {
            present
                .iter()
                .map(|ad| {
                    x.dropout(self.spec.dropout, true)
                        .linear::<Tensor>(&ad.a.to_kind(kind), None)
                        * self.scaling
                })
                .collect()
        } else if present.len() == 1 {
            vec![x.linear::<Tensor>(&present[0].a.to_kind(kind), None) * self.scaling]
        } else {
            let a = Tensor::cat(&present.iter().map(|ad| &ad.a).collect::<Vec<_>>(), 0).to_kind(kind);
            (x.linear::<Tensor>(&a, None) * self.scaling).split(r, -1)
        };
        let mut down = down.into_iter();
        ads.iter()
            .map(|ad| {
                ad.map(|ad| {
                    down.next()
                        .expect("one per adapter")
                        .linear::<Tensor>(&ad.b.to_kind(kind), None)
                })
            })
            .collect()
    }

    /// Every trainable tensor with its PEFT name, in a fixed order (layer, projection, A then B).
    pub fn named(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for layer in 0..self.layers {
            for (idx, proj) in PROJECTIONS.iter().enumerate() {
                if let Some(ad) = self.adapter(layer, idx) {
                    out.push((peft_name(layer, proj, 'A'), &ad.a));
                    out.push((peft_name(layer, proj, 'B'), &ad.b));
                }
            }
        }
        out
    }

    pub fn parameters(&self) -> Vec<&Tensor> {
        self.named().into_iter().map(|(_, t)| t).collect()
    }

    pub fn num_parameters(&self) -> i64 {
        self.parameters().iter().map(|t| t.numel() as i64).sum()
    }

    /// Overwrites the adapters with saved values (resume, or starting from a given adapter).
    pub fn load_values(&mut self, values: &BTreeMap<String, Tensor>) -> Result<(), String> {
        for (name, t) in self.named() {
            let v = values.get(&name).ok_or_else(|| format!("tensor {name} missing"))?;
            if v.size() != t.size() {
                return Err(format!("tensor {name}: shape {:?}, expected {:?}", v.size(), t.size()));
            }
            tch::no_grad(|| t.shallow_clone().copy_(&v.to_kind(Kind::Float).to_device(t.device())));
        }
        Ok(())
    }

    /// `adapter_config.json` as PEFT writes it for a causal-LM LoRA.
    pub fn peft_config(&self, base_model: &str, revision: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "revision": revision,
            "r": self.spec.r,
            "lora_alpha": self.spec.alpha,
            "lora_dropout": self.spec.dropout,
            "target_modules": self.spec.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": self.spec.use_rslora,
            "use_dora": false,
            "modules_to_save": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "init_lora_weights": true,
            "inference_mode": true,
        })
    }

    /// scaling · B·A for one projection, in f32 (what a merge adds to the base weight).
    pub fn merged_delta(&self, layer: usize, proj: &str) -> Option<Tensor> {
        let ad = self.adapter(layer, projection_index(proj)?)?;
        Some(tch::no_grad(|| ad.b.matmul(&ad.a) * self.scaling))
    }
}
