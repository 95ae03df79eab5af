//! `config.json` of a Llama-family model. Every shape the trainer and converter use comes from here.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// RoPE frequency scaling. Only Llama 3.x's scheme changes frequencies for the models we support.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint was saved in (`torch_dtype` / `dtype`), e.g. "bfloat16".
    pub dtype: Option<String>,
    /// The file as read, for writers that copy it (merged checkpoints).
    pub raw: serde_json::Value,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers ≥ 5 folds theta and scaling into one object.
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// Reads `config.json` from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json(&bytes).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path, source },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path, message },
            other => other,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let path = PathBuf::from("config.json");
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        let raw: Raw = serde_json::from_value(value.clone()).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };

        let architecture = raw
            .architectures
            .first()
            .cloned()
            .or(raw.model_type.clone())
            .unwrap_or_default();
        if !(architecture.starts_with("Llama") || architecture == "llama") {
            return Err(invalid(format!(
                "architecture {architecture:?} is not Llama-family (LlamaForCausalLM)"
            )));
        }
        if raw.num_attention_heads == 0 || raw.hidden_size == 0 || raw.num_hidden_layers == 0 {
            return Err(invalid(
                "hidden_size, num_hidden_layers and num_attention_heads must be positive".into(),
            ));
        }
        let kv = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv == 0 || !raw.num_attention_heads.is_multiple_of(kv) {
            return Err(invalid(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {kv}",
                raw.num_attention_heads
            )));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(invalid(format!(
                "head_dim {head_dim} must be even and positive (RoPE rotates pairs)"
            )));
        }

        let rope_params = raw.rope_parameters.as_ref();
        let rope_theta = raw
            .rope_theta
            .or_else(|| rope_params.and_then(|p| p["rope_theta"].as_f64()))
            .unwrap_or(10_000.0);
        let scaling = raw.rope_scaling.as_ref().or(rope_params).filter(|v| !v.is_null());
        let rope_scaling = match scaling {
            None => None,
            Some(s) => {
                let kind = s["rope_type"]
                    .as_str()
                    .or_else(|| s["type"].as_str())
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "llama3" => {
                        let field = |k: &str| {
                            s[k].as_f64()
                                .ok_or_else(|| invalid(format!("rope_scaling.{k} missing")))
                        };
                        Some(RopeScaling::Llama3 {
                            factor: field("factor")?,
                            low_freq_factor: field("low_freq_factor")?,
                            high_freq_factor: field("high_freq_factor")?,
                            original_max_position_embeddings: field("original_max_position_embeddings")?,
                        })
                    }
                    other => {
                        return Err(invalid(format!(
                            "rope_scaling type {other:?} is not supported (llama3 is)"
                        )));
                    }
                }
            }
        };
        let eos_token_ids = match raw.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|n| n as u32).collect(),
            _ => Vec::new(),
        };
        Ok(LlamaConfig {
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            vocab_size: raw.vocab_size,
            tie_word_embeddings: raw.tie_word_embeddings,
            bos_token_id: raw.bos_token_id,
            eos_token_ids,
            dtype: raw.torch_dtype.or(raw.dtype),
            raw: value,
        })
    }

    /// The expected shape (torch order: rows, cols) of every weight in the checkpoint, by HF name.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, hd) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads * hd;
        let mut out = vec![("model.embed_tokens.weight".to_owned(), vec![self.vocab_size, h])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.push(("model.norm.weight".to_owned(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), vec![self.vocab_size, h]));
        }
        out
    }

    /// RoPE inverse frequencies (length head_dim/2) as `transformers` computes them: the exponent and
    /// power in f32, then Llama 3 scaling in f32 (low band divided by the factor, middle band blended).
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let theta = self.rope_theta as f32;
        let base: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
            .collect();
        let Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) = &self.rope_scaling
        else {
            return base;
        };
        let (factor, low, high, old_ctx) = (
            *factor as f32,
            *low_freq_factor as f32,
            *high_freq_factor as f32,
            *original_max_position_embeddings as f32,
        );
        base.into_iter()
            .map(|f| {
                let wavelen = 2.0 * std::f32::consts::PI / f;
                if wavelen < old_ctx / high {
                    f
                } else if wavelen > old_ctx / low {
                    f / factor
                } else {
                    let smooth = (old_ctx / wavelen - low) / (high - low);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
            .collect()
    }

    /// Per-frequency divisors of Llama 3 scaling (1 = unchanged) — what GGUF stores as `rope_freqs.weight`.
    /// All ones without scaling.
    pub fn rope_scaling_factors(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) = &self.rope_scaling
        else {
            return vec![1.0; dim / 2];
        };
        let (factor, low, high, old_ctx) = (
            *factor as f32,
            *low_freq_factor as f32,
            *high_freq_factor as f32,
            *original_max_position_embeddings as f32,
        );
        let low_freq_wavelen = old_ctx / low;
        let high_freq_wavelen = old_ctx / high;
        (0..dim / 2)
            .map(|i| {
                let freq = (1.0 / self.rope_theta.powf((2 * i) as f64 / dim as f64)) as f32;
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_freq_wavelen {
                    1.0
                } else if wavelen > low_freq_wavelen {
                    factor
                } else {
                    let smooth = (old_ctx / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA31_8B: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
      "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
      "rope_theta": 500000.0, "max_position_embeddings": 131072, "vocab_size": 128256,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
      "torch_dtype": "bfloat16"}"#;

    #[test]
    fn reads_llama31_8b() {
        let c = LlamaConfig::from_json(LLAMA31_8B.as_bytes()).unwrap();
        assert_eq!((c.head_dim, c.num_key_value_heads), (128, 8));
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
        assert_eq!(c.expected_shapes().len(), 1 + 32 * 9 + 2);
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3 { .. })));
    }

    #[test]
    fn llama3_scaling_follows_the_three_bands() {
        let c = LlamaConfig::from_json(LLAMA31_8B.as_bytes()).unwrap();
        let f = c.rope_scaling_factors();
        assert_eq!(f.len(), 64);
        // High frequencies (short wavelengths) are untouched, the lowest are divided by the factor,
        // and the band in between moves monotonically from one to the other.
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        let inv = c.rope_inv_freq();
        let unscaled = 1.0 / 500_000f32.powf(126.0 / 128.0);
        assert!((inv[63] * 8.0 - unscaled).abs() <= unscaled * 1e-6);
        assert_eq!(inv[0], 1.0);
    }

    #[test]
    fn rejects_other_architectures_and_bad_heads() {
        let e = LlamaConfig::from_json(br#"{"architectures":["GPT2LMHeadModel"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4}"#).unwrap_err();
        assert!(e.to_string().contains("not Llama-family"), "{e}");
        let e = LlamaConfig::from_json(br#"{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":4}"#).unwrap_err();
        assert!(e.to_string().contains("multiple of num_key_value_heads"), "{e}");
    }
}
