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

    /// One context for a series of sequences (sized for the longest), keeping the KV cache of what it decoded
    /// last so the next sequence only decodes what follows their common prefix.
    fn session(&self, longest: usize) -> Result<Session<'_>, LlamaError> {
        Ok(Session {
            gguf: self,
            ctx: self.context(longest as u32)?,
            batch: LlamaBatch::new(longest.max(1), 1),
            cached: Vec::new(),
        })
    }

    /// The summed cross-entropy of every example's targets (the trainer's masks: only assistant tokens),
    /// from llama.cpp's logits at those positions. See [`Gguf::measure`].
    pub fn loss(&self, examples: &[Example]) -> Result<LossSum, LlamaError> {
        Ok(self.measure(examples, &[], 0, |_| false)?.loss)
    }

    /// Greedy continuations of `prompts`, as text in the prompts' order. See [`Gguf::measure`].
    pub fn generate_all(
        &self,
        prompts: &[Vec<i64>],
        max_tokens: usize,
        keep_going: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, LlamaError> {
        Ok(self.measure(&[], prompts, max_tokens, keep_going)?.answers)
    }

    /// The loss of `examples` and greedy answers to `prompts` in one context.
    ///
    /// Loss: the summed cross-entropy of every example's targets (the trainer's masks: only assistant tokens),
    /// from llama.cpp's logits at those positions; positions after the last target are not decoded at all.
    /// Answers: greedy continuations of each prompt until an end-of-generation token, `max_tokens`, or
    /// `keep_going` says the text so far decides the matter (an answer that cannot be a tool call any more).
    ///
    /// Eval conversations share long prefixes — the system prompt, for function-calling ones the tools'
    /// schemas (~400 tokens), and a tool-call prompt is the start of the conversation it was cut from — so
    /// examples and prompts are visited together in token order (a prompt right after the conversation it
    /// begins), and each decodes only what follows the prefix it shares with what the KV cache holds (a
    /// prefix's KV entries are the same whichever sequence computed them). The seconds spent on each part
    /// are measured apart.
    pub fn measure(
        &self,
        examples: &[Example],
        prompts: &[Vec<i64>],
        max_tokens: usize,
        keep_going: impl Fn(&str) -> bool,
    ) -> Result<Measured, LlamaError> {
        enum Job {
            Loss(usize),
            Answer(usize),
        }
        // Token order, except that a prompt sorts after every example it begins (as if it ended in a token
        // larger than any): the example's pass wants logits inside the prompt (earlier answers of a
        // multi-turn conversation are trained), the prompt then finds all of itself in the cache.
        const AFTER: [i64; 1] = [i64::MAX];
        let key = |job: &Job| -> std::iter::Chain<std::slice::Iter<'_, i64>, std::slice::Iter<'_, i64>> {
            match *job {
                Job::Loss(i) => examples[i].ids.iter().chain(&[]),
                Job::Answer(i) => prompts[i].iter().chain(&AFTER),
            }
        };
        let mut jobs: Vec<Job> = (0..prompts.len())
            .map(Job::Answer)
            .chain((0..examples.len()).map(Job::Loss))
            .collect();
        jobs.sort_by(|a, b| key(a).cmp(key(b)));
        let longest = examples
            .iter()
            .map(|e| e.ids.len())
            .chain(prompts.iter().map(|p| p.len() + max_tokens))
            .max()
            .unwrap_or(0);
        let mut session = self.session(longest)?;
        let mut out = Measured {
            answers: vec![String::new(); prompts.len()],
            ..Measured::default()
        };
        for job in jobs {
            let clock = std::time::Instant::now();
            match job {
                Job::Loss(k) => {
                    let ex = &examples[k];
                    out.loss = out.loss + session.loss(ex)?;
                    out.loss_seconds += clock.elapsed().as_secs_f64();
                }
                Job::Answer(k) => {
                    out.answers[k] = session.answer(&prompts[k], max_tokens, &keep_going)?;
                    out.answer_seconds += clock.elapsed().as_secs_f64();
                }
            }
        }
        Ok(out)
    }
}

/// What [`Gguf::measure`] found, and the seconds each part took.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub loss: LossSum,
    pub answers: Vec<String>,
    pub loss_seconds: f64,
    pub answer_seconds: f64,
}

impl std::ops::Add for LossSum {
    type Output = LossSum;

    fn add(self, other: LossSum) -> LossSum {
        LossSum {
            sum: self.sum + other.sum,
            tokens: self.tokens + other.tokens,
        }
    }
}

/// A context and the token ids its KV cache holds for sequence 0, position by position.
struct Session<'a> {
    gguf: &'a Gguf,
    ctx: LlamaContext<'a>,
    batch: LlamaBatch<'a>,
    cached: Vec<i64>,
}

impl Session<'_> {
    /// Decodes `ids` as sequence 0, reusing the cached prefix they share but at most up to `reuse_max`
    /// (positions whose logits are wanted must be decoded in this batch), with logits where `wanted(position)`.
    /// Returns the first decoded position: the logits of position `p` are row `p - start`.
    fn decode(&mut self, ids: &[i64], reuse_max: usize, wanted: impl Fn(usize) -> bool) -> Result<usize, LlamaError> {
        let shared = self.cached.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let mut start = shared.min(reuse_max).min(ids.len().saturating_sub(1));
        if start < self.cached.len() {
            // A partial removal can be refused (llama.cpp says so for some memory types): start over then.
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(start as u32), None)
                .map_err(|e| self.gguf.decode_err(e))?;
            if !removed {
                self.ctx.clear_kv_cache();
                start = 0;
            }
        }
        self.cached.truncate(start);
        self.batch.clear();
        for (i, &id) in ids.iter().enumerate().skip(start) {
            self.batch
                .add(LlamaToken::new(id as i32), i as i32, &[0], wanted(i))
                .map_err(|e| self.gguf.decode_err(e))?;
        }
        self.ctx.decode(&mut self.batch).map_err(|e| self.gguf.decode_err(e))?;
        self.cached.extend_from_slice(&ids[start..]);
        Ok(start)
    }

    /// Appends one token at `pos` (the next position) with its logits wanted: row 0 afterwards.
    fn push(&mut self, id: i64, pos: usize) -> Result<(), LlamaError> {
        self.batch.clear();
        self.batch
            .add(LlamaToken::new(id as i32), pos as i32, &[0], true)
            .map_err(|e| self.gguf.decode_err(e))?;
        self.ctx.decode(&mut self.batch).map_err(|e| self.gguf.decode_err(e))?;
        self.cached.push(id);
        Ok(())
    }

    fn logits(&self, row: usize) -> &[f32] {
        self.ctx.get_logits_ith(row as i32)
    }

    /// One example's summed cross-entropy: decoded up to its last target, reusing the cache up to its first.
    fn loss(&mut self, ex: &Example) -> Result<LossSum, LlamaError> {
        let targets = &ex.targets[..ex.ids.len().min(ex.targets.len())];
        let mut total = LossSum::default();
        let Some(first) = targets.iter().position(|&t| t != IGNORE) else {
            return Ok(total);
        };
        let last = targets.iter().rposition(|&t| t != IGNORE).unwrap_or(first);
        let start = self.decode(&ex.ids[..=last], first, |i| targets[i] != IGNORE)?;
        for (i, &target) in targets.iter().enumerate().take(last + 1).skip(first) {
            if target != IGNORE {
                total.sum += cross_entropy(self.logits(i - start), target as usize);
                total.tokens += 1;
            }
        }
        Ok(total)
    }

    /// The greedy continuation of `prompt`, as text.
    fn answer(
        &mut self,
        prompt: &[i64],
        max_tokens: usize,
        keep_going: impl Fn(&str) -> bool,
    ) -> Result<String, LlamaError> {
        let Some(last) = prompt.len().checked_sub(1) else {
            return Ok(String::new());
        };
        let start = self.decode(prompt, last, |i| i == last)?;
        let vocab = self.gguf.model.vocab();
        let mut row = last - start;
        let mut bytes = Vec::new();
        for pos in prompt.len()..prompt.len() + max_tokens {
            let next = LlamaToken::new(argmax(self.logits(row)) as i32);
            if vocab.is_eog(next) {
                break;
            }
            bytes.extend(vocab.token_to_piece(next, false, None));
            if !keep_going(&String::from_utf8_lossy(&bytes)) {
                break;
            }
            self.push(i64::from(next.0), pos)?;
            row = 0;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// −log softmax(logits)[target], with the max subtracted first. The sum of exponentials runs over the whole
/// vocabulary at every target position (49,152 values for SmolLM2, 128,256 for Llama 3): with libm's scalar
/// `exp` in f64 that was a large part of the loss pass. Here `exp` is evaluated in f32 lanes the compiler
/// vectorizes (relative error ~1e-7, far below the differences between quantizations the figures show),
/// summed in f32 over short runs and in f64 across them.
pub fn cross_entropy(logits: &[f32], target: usize) -> f64 {
    let max = max_f32(logits);
    let mut sum = 0f64;
    for run in logits.chunks(256) {
        let mut lanes = [0f32; LANES];
        let mut pieces = run.chunks_exact(LANES);
        for piece in &mut pieces {
            for (lane, &l) in lanes.iter_mut().zip(piece) {
                *lane += exp_nonpositive(l - max);
            }
        }
        for (lane, &l) in lanes.iter_mut().zip(pieces.remainder()) {
            *lane += exp_nonpositive(l - max);
        }
        sum += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    f64::from(max) + sum.ln() - f64::from(logits.get(target).copied().unwrap_or(f32::NEG_INFINITY))
}

const LANES: usize = 8;

/// The largest value, in lanes (a plain `fold(f32::max)` stays scalar); NaN-free logits assumed, as
/// llama.cpp's are.
fn max_f32(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut pieces = values.chunks_exact(LANES);
    for piece in &mut pieces {
        for (lane, &v) in lanes.iter_mut().zip(piece) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    let rest = pieces.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    lanes.iter().copied().fold(rest, f32::max)
}

/// e^x for x ≤ 0 in f32 without a libm call, so loops over it vectorize: x = n·ln 2 + r with |r| ≤ ln 2 / 2
/// (n rounded by the 1.5·2^23 trick, ln 2 split in two for the reduction), e^r by its degree-6 Taylor
/// polynomial (truncation error < 2e-8 relative on that interval), 2^n built in the exponent bits. Below −87
/// the result flushes to 0 (e^−87 ≈ 1.6e−38: nothing a sum of probabilities ≥ 1 can notice).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer held in the low bits
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let k = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    p * f32::from_bits((k.wrapping_add(127) as u32) << 23)
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
    /// The f64 definition the fast path must match.
    fn reference(logits: &[f32], target: usize) -> f64 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        max + sum.ln() - logits[target] as f64
    }

    #[test]
    fn cross_entropy_is_the_negative_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let want = -(3f64.exp() / z).ln();
        assert!((super::cross_entropy(&logits, 2) - want).abs() < 1e-6);
        assert_eq!(super::argmax(&[0.0, 5.0, 5.0, 1.0]), 1);
    }

    #[test]
    fn cross_entropy_matches_f64_over_a_vocabulary() {
        // Logits spread like a language model's (a few large, a long tail far below), odd length so the
        // remainder lanes count, targets from the top, the middle and the tail.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let logits: Vec<f32> = (0..49_157)
            .map(|i| {
                if i % 997 == 0 {
                    25.0 * next()
                } else {
                    40.0 * next() - 30.0
                }
            })
            .collect();
        for target in [0, 997, 1, 24_000, 49_156] {
            let (fast, slow) = (super::cross_entropy(&logits, target), reference(&logits, target));
            assert!(
                (fast - slow).abs() < 1e-5 * slow.abs().max(1.0),
                "target {target}: {fast} vs {slow}"
            );
        }
        // Values far below the max (flushed to 0) and exactly at it.
        let spread = [0.0f32, -50.0, -86.9, -87.5, -200.0, -1e30];
        for target in 0..spread.len() - 1 {
            let (fast, slow) = (super::cross_entropy(&spread, target), reference(&spread, target));
            assert!(
                (fast - slow).abs() < 1e-5 * slow.abs().max(1.0),
                "target {target}: {fast} vs {slow}"
            );
        }
    }

    #[test]
    fn exp_is_close_to_libm_over_its_range() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (fast, slow) = (super::exp_nonpositive(x) as f64, (x as f64).exp());
            assert!((fast - slow).abs() <= 3e-7 * slow, "e^{x}: {fast} vs {slow}");
            x += 0.0137;
        }
        assert_eq!(super::exp_nonpositive(0.0), 1.0);
        assert_eq!(super::exp_nonpositive(-1e30), super::exp_nonpositive(-87.0));
    }
}
