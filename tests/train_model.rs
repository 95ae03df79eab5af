//! Forward parity with transformers and assistant-only loss masks, on the fixture checkpoints.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use fireweave_ai::chat::{ChatTemplate, Message, ToolCall};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::data::{Conversation, Encoder, IGNORE, Truncation, truncate};
use fireweave_ai::train::model::Llama;
use support::fixture;
use tch::{Device, Kind, Tensor};

/// Our f32 CPU logits against transformers' f32 logits for case 0 of the reference file.
fn parity(name: &str, tolerance: f64) {
    let ck = Checkpoint::open(&fixture(name)).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu).unwrap();
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture(&format!("reference/{name}.safetensors"))).unwrap().into_iter().collect();
    let ids = reference["input_ids"].unsqueeze(0);
    let want = &reference["logits"];
    let got = tch::no_grad(|| model.logits(&ids, None)).squeeze_dim(0);
    assert_eq!(got.size(), want.size());
    let diff = (&got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    eprintln!("{name}: max |ours − transformers| = {diff:.3e} (max |logit| {scale:.2})");
    assert!(diff <= tolerance, "{name}: max abs logit difference {diff} > {tolerance}");
    assert!(got.argmax(-1, false).equal(&want.argmax(-1, false)), "{name}: greedy tokens differ");
}

// Tolerances: absolute, on f32 logits; the sums run in a different order than transformers' kernels.
#[test]
fn forward_parity_tiny_llama31_untied_bf16_checkpoint() {
    parity("tiny-llama31", 1e-4);
}

#[test]
fn forward_parity_tiny_gqa_tied() {
    parity("tiny-llama31-gqa-tied", 1e-4);
}

#[test]
fn forward_parity_smollm2_135m() {
    parity("smollm2-135m", 2e-3);
}

/// The decoded runs of consecutive loss-carrying tokens.
fn labeled_runs(model_dir: &str, conv: &Conversation, max_len: usize) -> (Vec<String>, Truncation) {
    let dir = fixture(model_dir);
    let template = ChatTemplate::from_model_dir(&dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let enc = Encoder {
        template: &template,
        tokenizer: &tokenizer,
        max_len,
    };
    let (ex, how) = truncate(enc.label(conv, 0).unwrap(), max_len);
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut prev = false;
    for &l in &ex.labels {
        if l != IGNORE {
            if !prev {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(l as u32);
        }
        prev = l != IGNORE;
    }
    let text = runs.iter().map(|r| tokenizer.decode(r, false).unwrap()).collect();
    (text, how)
}

fn conv(messages: Vec<Message>) -> Conversation {
    Conversation {
        messages,
        tools: Vec::new(),
    }
}

#[test]
fn mask_multi_turn_trains_each_answer_with_its_eot() {
    let c = conv(vec![
        Message::user("First question?"),
        Message::assistant("First answer."),
        Message::user("Second question?"),
        Message::assistant("Second answer."),
    ]);
    let (runs, how) = labeled_runs("tiny-llama31", &c, 4096);
    assert_eq!(runs, ["First answer.<|eot_id|>", "Second answer.<|eot_id|>"]);
    assert_eq!(how, Truncation::None);
}

#[test]
fn mask_system_prompt_carries_no_loss() {
    let c = conv(vec![
        Message::system(support::SYSTEM),
        Message::user("What port does HTTPS use?"),
        Message::assistant("TCP 443."),
    ]);
    let (runs, _) = labeled_runs("tiny-llama31", &c, 4096);
    assert_eq!(runs, ["TCP 443.<|eot_id|>"]);
}

#[test]
fn mask_tool_call_trained_tool_result_masked() {
    let tool = serde_json::json!({"type": "function", "function": {"name": "check_traffic_flow",
        "description": "Check if traffic is allowed", "parameters": {"type": "object", "properties": {
        "source": {"type": "string"}, "destination": {"type": "string"}, "port": {"type": "integer"}}}}});
    let c = Conversation {
        messages: vec![
            Message::system(support::SYSTEM),
            Message::user("Can 10.1.1.5 reach 10.2.0.9 on 443?"),
            Message::tool_calls(vec![ToolCall {
                name: "check_traffic_flow".into(),
                arguments: serde_json::json!({"source": "10.1.1.5", "destination": "10.2.0.9", "port": 443}),
            }]),
            Message::tool_result("check_traffic_flow", r#"{"allowed": false, "rule": "deny-any"}"#),
            Message::assistant("No: rule deny-any blocks it."),
        ],
        tools: vec![tool],
    };
    let (runs, _) = labeled_runs("tiny-llama31", &c, 4096);
    assert_eq!(
        runs,
        [
            r#"{"name": "check_traffic_flow", "parameters": {"source": "10.1.1.5", "destination": "10.2.0.9", "port": 443}}<|eot_id|>"#,
            "No: rule deny-any blocks it.<|eot_id|>",
        ]
    );
}

#[test]
fn mask_truncation_drops_whole_trailing_turns() {
    let c = conv(vec![
        Message::user("Short?"),
        Message::assistant("Yes."),
        Message::user("Long?"),
        Message::assistant(&"very ".repeat(200)),
    ]);
    let (full, _) = labeled_runs("tiny-llama31", &c, 4096);
    assert_eq!(full.len(), 2);
    let (runs, how) = labeled_runs("tiny-llama31", &c, 120);
    assert_eq!(runs, ["Yes.<|eot_id|>"]);
    assert_eq!(how, Truncation::Turns(1));
}

#[test]
fn mask_chatml_ends_at_im_end_without_the_newline() {
    let c = conv(vec![Message::user("Capital of Italy?"), Message::assistant("Rome.")]);
    let (runs, _) = labeled_runs("smollm2-135m", &c, 4096);
    assert_eq!(runs, ["Rome.<|im_end|>"]);
}
