//! LoRA adapters: trainable low-rank updates kept apart from the frozen base, named as PEFT names them.

use super::model::{Llama, PROJECTIONS, projection_path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// `spec.lora` of a TrainingRun. Defaults are the seed notebook's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 16,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: PROJECTIONS.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// alpha/r, or alpha/√r with rank-stabilized LoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.r == 0 {
            return Err("lora.r must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("lora.dropout {} must be in [0, 1)", self.dropout));
        }
        if self.target_modules.is_empty() {
            return Err("lora.targetModules is empty".into());
        }
        for m in &self.target_modules {
            if !PROJECTIONS.contains(&m.as_str()) {
                return Err(format!("lora.targetModules: unknown module {m:?} (known: {})", PROJECTIONS.join(", ")));
            }
        }
        Ok(())
    }
}

/// One adapter: A [r, in] and B [out, r], kept in f32 whatever the base dtype so AdamW's small updates survive.
pub struct Adapter {
    pub a: Tensor,
    pub b: Tensor,
    scaling: f64,
    dropout: f64,
}

impl Adapter {
    /// scaling · B(A(dropout(x))), computed in the activation dtype.
    pub fn delta(&self, x: &Tensor, kind: Kind, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        x.linear::<Tensor>(&self.a.to_kind(kind), None)
            .linear::<Tensor>(&self.b.to_kind(kind), None)
            * self.scaling
    }
}

pub struct LoraStore {
    pub config: LoraConfig,
    /// Keyed by (layer, projection name); BTreeMap so iteration (export, optimizer) order is fixed.
    adapters: BTreeMap<(usize, &'static str), Adapter>,
}

/// PEFT's tensor names, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
pub fn peft_name(layer: usize, proj: &str, which: char) -> String {
    format!("base_model.model.{}.lora_{which}.weight", projection_path(layer, proj))
}

impl LoraStore {
    /// Fresh adapters: A ~ kaiming_uniform(a=√5), i.e. U(−1/√in, 1/√in), and B = 0 (so training starts at
    /// the base model). Draws from libtorch's generator: seed it first for reproducible runs.
    pub fn new(model: &Llama, config: LoraConfig) -> Self {
        let mut adapters = BTreeMap::new();
        let scaling = config.scaling();
        for layer in 0..model.config.num_hidden_layers {
            for proj in PROJECTIONS {
                if !config.target_modules.iter().any(|m| m == proj) {
                    continue;
                }
                let w = model.base_weight(layer, proj).expect("every layer has every projection");
                let (out, inp) = w.size2().expect("projection weights are 2-D");
                let bound = 1.0 / (inp as f64).sqrt();
                let opts = (Kind::Float, model.device);
                let a = Tensor::empty([config.r as i64, inp], opts)
                    .uniform_(-bound, bound)
                    .set_requires_grad(true);
                let b = Tensor::zeros([out, config.r as i64], opts).set_requires_grad(true);
                adapters.insert(
                    (layer, proj),
                    Adapter {
                        a,
                        b,
                        scaling,
                        dropout: config.dropout,
                    },
                );
            }
        }
        LoraStore { config, adapters }
    }

    pub fn adapter(&self, layer: usize, proj: &str) -> Option<&Adapter> {
        let key = PROJECTIONS.iter().find(|p| **p == proj)?;
        self.adapters.get(&(layer, *key))
    }

    /// Every trainable tensor with its PEFT name, in a fixed order (A then B per adapter).
    pub fn named(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(self.adapters.len() * 2);
        for ((layer, proj), ad) in &self.adapters {
            out.push((peft_name(*layer, proj, 'A'), &ad.a));
            out.push((peft_name(*layer, proj, 'B'), &ad.b));
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
    pub fn peft_config(&self, base_model: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.r,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.target_modules,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": self.config.use_rslora,
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
        let ad = self.adapter(layer, proj)?;
        Some(tch::no_grad(|| ad.b.matmul(&ad.a) * ad.scaling))
    }
}
