//! The scheduler: one thread per model owns its llama.cpp context and decodes every active request together,
//! one sequence per slot, one batch per step. Requests arrive on a bounded channel (the queue); tokens go back
//! on a per-request channel whose closing (the client went away) frees the slot at the next step.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use super::options::Sampling;
use super::text::{StopFilter, Utf8Stream};

/// Fixed per process: how the context is built.
#[derive(Clone, Debug)]
pub struct EngineParams {
    /// Concurrent sequences decoded together.
    pub parallel: u32,
    /// Context length of each sequence.
    pub num_ctx: u32,
    pub threads: i32,
    pub batch: u32,
    pub timeout: Duration,
    pub flash_attention: FlashAttention,
}

/// llama.cpp's flash-attention policy for the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FlashAttention {
    /// llama.cpp decides per device (on for CPU and most GPUs).
    #[default]
    Auto,
    On,
    Off,
}

impl FlashAttention {
    fn policy(self) -> llama_cpp_sys_2::llama_flash_attn_type {
        match self {
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneReason {
    Stop,
    Length,
}

impl DoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Finish {
    pub reason: DoneReason,
    pub prompt_tokens: usize,
    pub eval_tokens: usize,
    pub prompt_ns: u64,
    pub eval_ns: u64,
    /// Prompt and generated token ids (Ollama's `context`).
    pub tokens: Vec<i32>,
}

#[derive(Debug)]
pub enum Event {
    Text(String),
    Done(Finish),
    Error(String),
}

pub struct GenJob {
    pub prompt: Vec<LlamaToken>,
    pub sampling: Sampling,
    /// A GBNF grammar (from `format`) the output must follow.
    pub grammar: Option<String>,
    pub events: mpsc::UnboundedSender<Event>,
    pub endpoint: &'static str,
}

pub struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

pub enum Job {
    Generate(GenJob),
    Embed(EmbedJob),
}

/// State the HTTP side reads.
#[derive(Default)]
pub struct EngineState {
    pub ready: AtomicBool,
    pub queued: AtomicUsize,
    pub active: AtomicUsize,
}

struct Slot {
    seq: i32,
    job: GenJob,
    sampler: LlamaSampler,
    /// Tokens already in this sequence's KV cache.
    n_past: usize,
    tokens: Vec<LlamaToken>,
    generated: usize,
    /// Batch row whose logits belong to this slot after the current decode.
    logits_row: Option<i32>,
    utf8: Utf8Stream,
    stop: StopFilter,
    admitted: Instant,
    first_token: Option<Instant>,
}

/// Builds the sampler chain in llama.cpp's usual order; temperature ≤ 0 means greedy.
fn build_sampler(model: &LlamaModel, s: &Sampling, grammar: Option<&str>) -> Result<LlamaSampler, String> {
    let mut chain = Vec::new();
    if !s.logit_bias.is_empty() {
        let biases: Vec<_> = s
            .logit_bias
            .iter()
            .map(|&(t, b)| LlamaLogitBias::new(LlamaToken::new(t), b))
            .collect();
        chain.push(LlamaSampler::logit_bias(model.n_vocab(), &biases));
    }
    if let Some(g) = grammar {
        chain.push(LlamaSampler::grammar(model, g, "root").map_err(|e| format!("invalid format grammar: {e}"))?);
    }
    if s.repeat_penalty != 1.0 || s.frequency_penalty != 0.0 || s.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            s.repeat_last_n,
            s.repeat_penalty,
            s.frequency_penalty,
            s.presence_penalty,
        ));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.typical_p < 1.0 {
            chain.push(LlamaSampler::typical(s.typical_p, 1));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        // llama.cpp's "default seed" asks for a random one.
        chain.push(LlamaSampler::dist(s.seed.unwrap_or(u32::MAX)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// Runs on its own thread until every sender of `jobs` is gone and no request is in flight.
pub fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    params: &EngineParams,
    jobs: Receiver<Job>,
    state: Arc<EngineState>,
    metrics: Metrics,
    model_name: &str,
) -> Result<(), String> {
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(params.num_ctx * params.parallel))
        .with_n_seq_max(params.parallel)
        .with_n_batch(params.batch)
        .with_n_ubatch(params.batch)
        .with_n_threads(params.threads)
        .with_n_threads_batch(params.threads)
        .with_flash_attention_policy(params.flash_attention.policy());
    let mut ctx = model
        .new_context(backend, ctx_params)
        .map_err(|e| format!("creating llama.cpp context: {e}"))?;
    warm_up(model, &mut ctx)?;
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        model = model_name,
        parallel = params.parallel,
        num_ctx = params.num_ctx,
        "model ready"
    );

    let mut embed_ctx: Option<LlamaContext> = None;
    let mut slots: Vec<Option<Slot>> = (0..params.parallel).map(|_| None).collect();
    let mut batch = LlamaBatch::new(params.batch as usize, params.parallel as i32);
    let mut disconnected = false;
    loop {
        // Admit waiting requests into free slots; block only when there is nothing to decode.
        while !disconnected && slots.iter().any(Option::is_none) {
            let idle = slots.iter().all(Option::is_none);
            let job = if idle {
                jobs.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                jobs.try_recv()
            };
            match job {
                Ok(job) => {
                    state.queued.fetch_sub(1, Ordering::SeqCst);
                    match job {
                        Job::Embed(e) => {
                            let result = embed(backend, model, params, &mut embed_ctx, &e.inputs);
                            let _ = e.reply.send(result);
                        }
                        Job::Generate(g) => admit(model, &mut ctx, &mut slots, g),
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => disconnected = true,
            }
        }
        let active = publish_active(&slots, &state);
        if active == 0 {
            if disconnected {
                return Ok(());
            }
            continue;
        }
        step(model, &mut ctx, &mut batch, &mut slots, params, &metrics);
        // Again after the step: a request that just finished frees its slot now, and the loop may next block
        // in `recv` for a long idle time — the gauge must not keep saying a slot is busy meanwhile.
        publish_active(&slots, &state);
    }
}

/// Counts the busy slots into the scheduler state (the `active_slots` gauge reads it at scrape time).
fn publish_active(slots: &[Option<Slot>], state: &EngineState) -> usize {
    let active = slots.iter().filter(|s| s.is_some()).count();
    state.active.store(active, Ordering::SeqCst);
    active
}

fn warm_up(model: &LlamaModel, ctx: &mut LlamaContext) -> Result<(), String> {
    let tokens = model.vocab().tokenize(b"Hello", true, false);
    let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
    batch
        .add_sequence(&tokens, 0, false)
        .map_err(|e| format!("warm-up batch: {e}"))?;
    ctx.decode(&mut batch).map_err(|e| format!("warm-up decode: {e}"))?;
    let mut greedy = LlamaSampler::greedy();
    let _ = greedy.sample(ctx, batch.n_tokens() - 1);
    ctx.clear_kv_cache();
    Ok(())
}

fn admit(model: &LlamaModel, ctx: &mut LlamaContext, slots: &mut [Option<Slot>], job: GenJob) {
    if job.events.is_closed() {
        return;
    }
    let Some(free) = slots.iter().position(Option::is_none) else {
        let _ = job.events.send(Event::Error("no free slot".into()));
        return;
    };
    let sampler = match build_sampler(model, &job.sampling, job.grammar.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let _ = job.events.send(Event::Error(e));
            return;
        }
    };
    let seq = free as i32;
    let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
    let stop = StopFilter::new(job.sampling.stop.clone());
    slots[free] = Some(Slot {
        seq,
        sampler,
        n_past: 0,
        tokens: job.prompt.clone(),
        generated: 0,
        logits_row: None,
        utf8: Utf8Stream::default(),
        stop,
        admitted: Instant::now(),
        first_token: None,
        job,
    });
}

/// One decode of every active sequence: pending prompt tokens (in chunks, within the batch size) and the
/// last sampled token of each generating sequence, then one sample per sequence that produced logits.
fn step(
    model: &LlamaModel,
    ctx: &mut LlamaContext,
    batch: &mut LlamaBatch,
    slots: &mut [Option<Slot>],
    params: &EngineParams,
    metrics: &Metrics,
) {
    // Free the slots of clients that left or ran out of time before spending compute on them.
    for entry in slots.iter_mut() {
        let drop_reason = match entry {
            Some(s) if s.job.events.is_closed() => Some("client disconnected"),
            Some(s) if s.admitted.elapsed() > params.timeout => Some("request timed out"),
            _ => None,
        };
        if let Some(reason) = drop_reason
            && let Some(s) = entry.take()
        {
            tracing::info!(seq = s.seq, reason, "slot freed");
            let _ = s.job.events.send(Event::Error(reason.into()));
            let _ = ctx.clear_kv_cache_seq(Some(s.seq as u32), None, None);
            metrics.cancelled.inc();
        }
    }
    batch.clear();
    let budget = params.batch as usize;
    // Generating sequences first: one token each keeps every stream moving while long prompts prefill.
    for slot in slots.iter_mut().flatten() {
        slot.logits_row = None;
        if slot.n_past >= slot.job.prompt.len() && slot.n_past < slot.tokens.len() {
            let token = slot.tokens[slot.n_past];
            if batch.add(token, slot.n_past as i32, &[slot.seq], true).is_ok() {
                slot.logits_row = Some(batch.n_tokens() - 1);
                slot.n_past += 1;
            }
        }
    }
    for slot in slots.iter_mut().flatten() {
        let prompt_len = slot.job.prompt.len();
        if slot.n_past >= prompt_len {
            continue;
        }
        let room = budget.saturating_sub(batch.n_tokens() as usize);
        let take = room.min(prompt_len - slot.n_past);
        for i in slot.n_past..slot.n_past + take {
            let last = i + 1 == prompt_len;
            if batch.add(slot.tokens[i], i as i32, &[slot.seq], last).is_err() {
                break;
            }
            if last {
                slot.logits_row = Some(batch.n_tokens() - 1);
            }
        }
        slot.n_past += take;
    }
    if batch.n_tokens() == 0 {
        return;
    }
    if let Err(e) = ctx.decode(batch) {
        tracing::error!(error = %e, "llama.cpp decode failed");
        for entry in slots.iter_mut() {
            if let Some(s) = entry.take() {
                let _ = s.job.events.send(Event::Error(format!("decode failed: {e}")));
                let _ = ctx.clear_kv_cache_seq(Some(s.seq as u32), None, None);
            }
        }
        return;
    }
    let vocab = model.vocab();
    for entry in slots.iter_mut() {
        let Some(slot) = entry.as_mut() else { continue };
        let Some(row) = slot.logits_row else { continue };
        let token = slot.sampler.sample(ctx, row);
        let now = Instant::now();
        if slot.first_token.is_none() {
            slot.first_token = Some(now);
            metrics
                .ttft
                .with_label_values(&[slot.job.endpoint])
                .observe((now - slot.admitted).as_secs_f64());
        }
        let mut finish = None;
        // A matched stop string already cut the text; other endings release what the filters held back.
        let mut flush = true;
        if vocab.is_eog(token) {
            finish = Some(DoneReason::Stop);
        } else {
            slot.generated += 1;
            slot.tokens.push(token);
            let piece = vocab.token_to_piece(token, true, None);
            let text = slot.utf8.push(&piece);
            let check = slot.stop.push(&text);
            if !check.emit.is_empty() {
                let _ = slot.job.events.send(Event::Text(check.emit));
            }
            if check.stopped {
                finish = Some(DoneReason::Stop);
                flush = false;
            } else if slot.job.sampling.num_predict.is_some_and(|n| slot.generated >= n)
                || slot.tokens.len() >= params.num_ctx as usize
            {
                finish = Some(DoneReason::Length);
            }
        }
        if let Some(reason) = finish {
            let Some(mut slot) = entry.take() else { continue };
            if flush {
                let tail = slot.utf8.finish();
                let mut rest = slot.stop.push(&tail).emit;
                rest.push_str(&slot.stop.finish());
                if !rest.is_empty() {
                    let _ = slot.job.events.send(Event::Text(rest));
                }
            }
            let first = slot.first_token.unwrap_or(now);
            let eval_ns = (now - first).as_nanos() as u64;
            metrics.prompt_tokens.inc_by(slot.job.prompt.len() as u64);
            metrics.eval_tokens.inc_by(slot.generated as u64);
            if slot.generated > 1 && eval_ns > 0 {
                metrics
                    .tokens_per_second
                    .observe((slot.generated - 1) as f64 / (eval_ns as f64 / 1e9));
            }
            let _ = slot.job.events.send(Event::Done(Finish {
                reason,
                prompt_tokens: slot.job.prompt.len(),
                eval_tokens: slot.generated,
                prompt_ns: (first - slot.admitted).as_nanos() as u64,
                eval_ns,
                tokens: slot.tokens.iter().map(|t| t.0).collect(),
            }));
            let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
        }
    }
}

/// Mean-pooled, L2-normalised embeddings (what Ollama's `/api/embed` returns), from a second context that is
/// created on first use so plain chat servers never pay for it.
fn embed<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    params: &EngineParams,
    embed_ctx: &mut Option<LlamaContext<'m>>,
    inputs: &[Vec<LlamaToken>],
) -> Result<Vec<Vec<f32>>, String> {
    if embed_ctx.is_none() {
        let p = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(params.num_ctx))
            .with_n_batch(params.num_ctx)
            .with_n_ubatch(params.num_ctx)
            .with_n_threads(params.threads)
            .with_n_threads_batch(params.threads)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean);
        *embed_ctx = Some(
            model
                .new_context(backend, p)
                .map_err(|e| format!("creating embedding context: {e}"))?,
        );
    }
    let Some(ctx) = embed_ctx.as_mut() else {
        return Err("embedding context unavailable".into());
    };
    let mut out = Vec::with_capacity(inputs.len());
    for tokens in inputs {
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
        batch
            .add_sequence(tokens, 0, true)
            .map_err(|e| format!("embedding batch: {e}"))?;
        ctx.decode(&mut batch).map_err(|e| format!("embedding decode: {e}"))?;
        let v = ctx.embeddings_seq_ith(0).map_err(|e| format!("embedding: {e}"))?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.push(v.iter().map(|x| x / norm).collect());
    }
    Ok(out)
}
