//! llama.cpp from integration tests (feature `serve`): one backend per process, logits of every position.
#![allow(dead_code)]

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

/// llama.cpp's backend may be initialized once per process. Set FIREWEAVE_LLAMA_LOGS to see its logs.
pub fn backend() -> &'static LlamaBackend {
    static B: OnceLock<LlamaBackend> = OnceLock::new();
    B.get_or_init(|| {
        if std::env::var_os("FIREWEAVE_LLAMA_LOGS").is_some() {
            let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).try_init();
        }
        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(std::env::var_os("FIREWEAVE_LLAMA_LOGS").is_some()),
        );
        LlamaBackend::init().expect("llama.cpp backend")
    })
}

/// Logits of every position of `ids` from llama.cpp on the GGUF at `path`, [seq × vocab] row-major, and vocab.
pub fn logits(path: &Path, ids: &[i32]) -> (Vec<f32>, usize) {
    let model = LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .unwrap_or_else(|e| panic!("llama.cpp could not load {}: {e}", path.display()));
    let n = ids.len() as u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n.max(64)))
        .with_n_batch(n.max(64))
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend(), params).expect("context");
    let mut batch = LlamaBatch::new(ids.len(), 1);
    for (i, &id) in ids.iter().enumerate() {
        batch.add(LlamaToken::new(id), i as i32, &[0], true).expect("batch");
    }
    ctx.decode(&mut batch).expect("decode");
    let vocab = model.n_vocab() as usize;
    let mut all = Vec::with_capacity(ids.len() * vocab);
    for i in 0..ids.len() {
        all.extend_from_slice(ctx.get_logits_ith(i as i32));
    }
    (all, vocab)
}
