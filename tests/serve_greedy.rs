//! Greedy decoding through the server (batched scheduler, several requests at once) yields exactly the tokens
//! of a plain single-sequence llama.cpp greedy loop over the same GGUF and prompt.
#![cfg(feature = "serve")]

#[path = "serve/common.rs"]
mod common;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use std::num::NonZeroU32;

const PROMPT: &str =
    "<|im_start|>user\nList three common network ports and what they are for.<|im_end|>\n<|im_start|>assistant\n";
const N: usize = 40;

/// llama.cpp on its own: tokenize, decode the prompt, then argmax one token at a time.
fn reference_greedy(path: &std::path::Path) -> (Vec<i32>, Vec<i32>) {
    let mut backend = LlamaBackend::init().unwrap();
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(&backend, params).unwrap();
    let prompt = model.vocab().tokenize(PROMPT.as_bytes(), true, true);
    let mut batch = LlamaBatch::new(512, 1);
    batch.add_sequence(&prompt, 0, false).unwrap();
    ctx.decode(&mut batch).unwrap();
    let mut sampler = LlamaSampler::greedy();
    let mut out = Vec::new();
    let start = prompt.len() as i32;
    for pos in start..start + N as i32 {
        let t = sampler.sample(&ctx, batch.n_tokens() - 1);
        if model.vocab().is_eog(t) {
            break;
        }
        out.push(t.0);
        batch.clear();
        batch.add(t, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
    }
    (prompt.iter().map(|t| t.0).collect(), out)
}

#[test]
fn server_greedy_tokens_equal_llama_cpp_greedy_tokens() {
    let gguf = common::smollm2_gguf();
    let (prompt, expected) = reference_greedy(&gguf);
    assert!(
        expected.len() > 10,
        "reference produced too little to compare: {expected:?}"
    );
    let model_arg = format!("smol={}", gguf.display());
    let server = common::Server::start(&["--model", &model_arg, "--parallel", "4", "--num-ctx", "512"]);
    let body = serde_json::json!({"model": "smol", "prompt": PROMPT, "raw": true, "stream": false,
        "options": {"temperature": 0, "num_predict": N}})
    .to_string();
    // Four at once, so the comparison covers sequences sharing a batch, not just a lone request.
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| server.request("POST", "/api/generate", &body).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, text) in results {
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let context: Vec<i32> = serde_json::from_value(v["context"].clone()).unwrap();
        assert_eq!(&context[..prompt.len()], &prompt[..], "prompt tokens differ");
        assert_eq!(
            &context[prompt.len()..],
            &expected[..],
            "generated tokens differ from llama.cpp greedy"
        );
    }
}
