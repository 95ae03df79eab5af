//! Ollama's generation `options`: what a request may set, merged over a model's defaults, and resolved into
//! the concrete sampling settings the engine uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every field optional, so request options can be layered over model defaults key by key.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_keep: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typical_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// Accepted for compatibility (runtime knobs fixed at start-up here) and everything unknown: Ollama
    /// ignores unknown keys with a log line, and so do we.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Resolved settings with Ollama's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub seed: Option<u32>,
    pub num_predict: Option<usize>,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_last_n: i32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub stop: Vec<String>,
    /// Additive logit offsets by token id (OpenAI's `logit_bias`; -100 bans a token).
    pub logit_bias: Vec<(i32, f32)>,
}

/// Runtime knobs that Ollama accepts in `options` but that are fixed per process here.
const RUNTIME_KEYS: &[&str] = &[
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "numa",
    "low_vram",
];

impl Options {
    /// `self` (the request) over `defaults` (the model's parameters), key by key.
    pub fn over(&self, defaults: &Options) -> Options {
        macro_rules! pick {
            ($f:ident) => {
                self.$f.clone().or_else(|| defaults.$f.clone())
            };
        }
        Options {
            num_keep: pick!(num_keep),
            seed: pick!(seed),
            num_predict: pick!(num_predict),
            top_k: pick!(top_k),
            top_p: pick!(top_p),
            min_p: pick!(min_p),
            typical_p: pick!(typical_p),
            repeat_last_n: pick!(repeat_last_n),
            temperature: pick!(temperature),
            repeat_penalty: pick!(repeat_penalty),
            presence_penalty: pick!(presence_penalty),
            frequency_penalty: pick!(frequency_penalty),
            stop: pick!(stop),
            num_ctx: pick!(num_ctx),
            other: BTreeMap::new(),
        }
    }

    /// Keys that neither this server nor Ollama's runtime list knows, for the log line.
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.other
            .keys()
            .map(String::as_str)
            .filter(|k| !RUNTIME_KEYS.contains(k))
            .collect()
    }

    pub fn resolve(&self) -> Sampling {
        Sampling {
            // Ollama: a negative seed means "random".
            seed: self.seed.filter(|s| *s >= 0).map(|s| s as u32),
            // Ollama: -1 = until the context is full, -2 = fill the context; both mean no token limit here.
            num_predict: self.num_predict.filter(|n| *n >= 0).map(|n| n as usize),
            top_k: self.top_k.unwrap_or(40),
            top_p: self.top_p.unwrap_or(0.9),
            min_p: self.min_p.unwrap_or(0.0),
            typical_p: self.typical_p.unwrap_or(1.0),
            repeat_last_n: self.repeat_last_n.unwrap_or(64),
            temperature: self.temperature.unwrap_or(0.8),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            stop: self.stop.clone().unwrap_or_default(),
            logit_bias: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_over_model_defaults_then_ollama_defaults() {
        let model: Options =
            serde_json::from_value(serde_json::json!({"temperature": 0.7, "top_k": 20, "stop": ["X"]})).unwrap();
        let req: Options =
            serde_json::from_value(serde_json::json!({"temperature": 0, "seed": 5, "num_thread": 2, "bogus": 1}))
                .unwrap();
        assert_eq!(req.unknown_keys(), vec!["bogus"]);
        let s = req.over(&model).resolve();
        assert_eq!(s.temperature, 0.0);
        assert_eq!(s.top_k, 20);
        assert_eq!(s.top_p, 0.9);
        assert_eq!(s.seed, Some(5));
        assert_eq!(s.stop, vec!["X".to_string()]);
        assert_eq!(s.num_predict, None);
        let s = Options {
            seed: Some(-1),
            num_predict: Some(-2),
            ..Options::default()
        }
        .resolve();
        assert_eq!((s.seed, s.num_predict, s.repeat_last_n), (None, None, 64));
    }
}
