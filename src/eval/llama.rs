//! A GGUF file as llama.cpp (the engine that serves it) sees it: its own tokenizer and chat template, the loss
//! of token sequences, and greedy generation.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::train::data::{Example, IGNORE};

#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("{path}: llama.cpp: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: llama.cpp decode: {message}")]
    Decode { path: PathBuf, message: String },
}

pub struct Gguf {
    path: PathBuf,
    model: LlamaModel,
    threads: i32,
}

/// Cross-entropy summed over the positions that carry a target, and how many do.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSum {
    pub sum: f64,
    pub tokens: usize,
}

impl LossSum {
    pub fn mean(self) -> Option<f64> {
        (self.tokens > 0).then(|| self.sum / self.tokens as f64)
    }
}

impl Gguf {
    pub fn load(path: &Path, threads: i32) -> Result<Self, LlamaError> {
        let backend = crate::serve::model::backend().map_err(|e| LlamaError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let model =
            LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| LlamaError::Load {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Gguf {
            path: path.to_owned(),
            model,
            threads,
        })
    }

    /// The GGUF's `tokenizer.chat_template`, as the built-in server reads it.
    pub fn chat_template(&self) -> Option<String> {
        self.model.chat_template(None).ok().and_then(|t| t.to_string().ok())
    }

    pub fn bos_eos(&self) -> (String, String) {
        let vocab = self.model.vocab();
        let text = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
        (text(vocab.bos()), text(vocab.eos()))
    }

    /// A rendered prompt as the built-in server tokenizes it (special tokens parsed, none added: the template
    /// writes them).
    pub fn tokenize(&self, text: &str) -> Vec<i64> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| i64::from(t.0))
            .collect()
    }

    fn context(&self, n_ctx: u32) -> Result<LlamaContext<'_>, LlamaError> {
        let backend = crate::serve::model::backend().map_err(|e| LlamaError::Load {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let n = n_ctx.max(64);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n))
            .with_n_batch(n)
            .with_n_ubatch(n.min(512))
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        self.model.new_context(backend, params).map_err(|e| LlamaError::Load {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn decode_err(&self, e: impl std::fmt::Display) -> LlamaError {
        LlamaError::Decode {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The summed cross-entropy of every example's targets (the trainer's masks: only assistant tokens),
    /// from llama.cpp's logits at every position.
    pub fn loss(&self, examples: &[Example]) -> Result<LossSum, LlamaError> {
        let longest = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0) as u32;
        let mut ctx = self.context(longest)?;
        let mut total = LossSum::default();
        for ex in examples {
            ctx.clear_kv_cache();
            let mut batch = LlamaBatch::new(ex.ids.len(), 1);
            for (i, &id) in ex.ids.iter().enumerate() {
                let wanted = ex.targets[i] != IGNORE;
                batch
                    .add(LlamaToken::new(id as i32), i as i32, &[0], wanted)
                    .map_err(|e| self.decode_err(e))?;
            }
            ctx.decode(&mut batch).map_err(|e| self.decode_err(e))?;
            for (i, &target) in ex.targets.iter().enumerate() {
                if target == IGNORE {
                    continue;
                }
                total.sum += cross_entropy(ctx.get_logits_ith(i as i32), target as usize);
                total.tokens += 1;
            }
        }
        Ok(total)
    }

    /// Greedy continuation of `prompt` until an end-of-generation token, `max_tokens`, or `keep_going` says
    /// the text so far decides the matter (an answer that cannot be a tool call any more), as text.
    pub fn generate(
        &self,
        prompt: &[i64],
        max_tokens: usize,
        keep_going: impl Fn(&str) -> bool,
    ) -> Result<String, LlamaError> {
        let mut ctx = self.context((prompt.len() + max_tokens) as u32)?;
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        for (i, &id) in prompt.iter().enumerate() {
            batch
                .add(LlamaToken::new(id as i32), i as i32, &[0], i + 1 == prompt.len())
                .map_err(|e| self.decode_err(e))?;
        }
        ctx.decode(&mut batch).map_err(|e| self.decode_err(e))?;
        let mut row = batch.n_tokens() - 1;
        let mut bytes = Vec::new();
        for pos in prompt.len()..prompt.len() + max_tokens {
            let logits = ctx.get_logits_ith(row);
            let next = argmax(logits) as i32;
            let token = LlamaToken::new(next);
            if vocab.is_eog(token) {
                break;
            }
            bytes.extend(vocab.token_to_piece(token, false, None));
            if !keep_going(&String::from_utf8_lossy(&bytes)) {
                break;
            }
            batch.clear();
            batch
                .add(token, pos as i32, &[0], true)
                .map_err(|e| self.decode_err(e))?;
            ctx.decode(&mut batch).map_err(|e| self.decode_err(e))?;
            row = 0;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// −log softmax(logits)[target], in f64 with the max subtracted first.
pub fn cross_entropy(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln() - logits.get(target).copied().unwrap_or(f32::NEG_INFINITY) as f64
}

/// The first index of the largest value (llama.cpp's greedy sampler picks the same).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn cross_entropy_is_the_negative_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let want = -(3f64.exp() / z).ln();
        assert!((super::cross_entropy(&logits, 2) - want).abs() < 1e-12);
        assert_eq!(super::argmax(&[0.0, 5.0, 5.0, 1.0]), 1);
    }
}
