//! Forward parity with transformers and assistant-only loss masks, on the fixture checkpoints.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use fireweave_ai::chat::{ChatTemplate, Message, ToolCall};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::data::{Conversation, Encoder, IGNORE, Truncation, parse_record, truncate};
use fireweave_ai::train::model::Llama;
use fireweave_ai::train::nf4;
use support::fixture;
use tch::{Device, Kind, Tensor};

fn reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(&format!("reference/{name}.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

/// Our f32 CPU logits against transformers' f32 logits for case 0 of the reference file.
fn parity(name: &str, tolerance: f64) {
    let ck = Checkpoint::open(&fixture(name)).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    let reference = reference(name);
    let ids = reference["input_ids"].unsqueeze(0);
    let want = &reference["logits"];
    let got = tch::no_grad(|| model.logits(&ids, None)).squeeze_dim(0);
    assert_eq!(got.size(), want.size());
    let diff = (&got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    eprintln!("{name}: max |ours − transformers| = {diff:.3e} (max |logit| {scale:.2})");
    assert!(
        diff <= tolerance,
        "{name}: max abs logit difference {diff} > {tolerance}"
    );
    assert!(
        got.argmax(-1, false).equal(&want.argmax(-1, false)),
        "{name}: greedy tokens differ"
    );
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
        system: "",
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
            // Arguments as Ollama's template package prints them (Go JSON: sorted keys, no spaces), so the
            // trainer, the built-in server and Ollama write the same bytes (tests/chat_templates.rs).
            r#"{"name": "check_traffic_flow", "parameters": {"destination":"10.2.0.9","port":443,"source":"10.1.1.5"}}<|eot_id|>"#,
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
        Message::assistant("very ".repeat(200)),
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

#[test]
fn mask_openai_messages_with_string_arguments() {
    // The OpenAI shape: arguments as a JSON string, decoded before rendering (no double encoding), and the
    // tool result ("ipython" in Llama 3.1) carries no loss.
    let record = serde_json::json!({"messages": [
        {"role": "user", "content": "Scan fw-edge-1 for PCI-DSS."},
        {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {
            "name": "run_compliance_scan", "arguments": "{\"framework\": \"PCI-DSS\", \"firewall\": \"fw-edge-1\"}"}}]},
        {"role": "tool", "name": "run_compliance_scan", "content": "{\"findings\": 2}"},
        {"role": "assistant", "content": "Two findings."}
    ], "tools": [{"name": "run_compliance_scan", "parameters": {"type": "object"}}]});
    let c = parse_record(&record).unwrap();
    let (runs, _) = labeled_runs("tiny-llama31", &c, 4096);
    assert_eq!(
        runs,
        [
            r#"{"name": "run_compliance_scan", "parameters": {"firewall":"fw-edge-1","framework":"PCI-DSS"}}<|eot_id|>"#,
            "Two findings.<|eot_id|>",
        ]
    );
}

#[test]
fn mask_hard_truncation_cuts_inside_the_only_answer() {
    let c = conv(vec![Message::user("Explain?"), Message::assistant("word ".repeat(300))]);
    let (runs, how) = labeled_runs("tiny-llama31", &c, 64);
    assert_eq!(how, Truncation::Hard);
    assert_eq!(runs.len(), 1);
    assert!(
        runs[0].starts_with("word word") && !runs[0].contains("<|eot_id|>"),
        "{runs:?}"
    );
}

/// Our NF4 quantizer against an independent NumPy implementation of the same algorithm, bit for bit, on a
/// real weight (SmolLM2's first q_proj) and on edge cases: an all-zero block, values on code midpoints, a
/// partial last block, several absmax groups.
#[test]
fn nf4_matches_the_numpy_reference() {
    let ck = Checkpoint::open(&fixture("smollm2-135m")).unwrap();
    let mut values = ck.tensor("model.layers.0.self_attn.q_proj.weight").unwrap().to_f32();
    values.extend(std::iter::repeat_n(0.0, 64));
    let codes = nf4::CODE;
    let mut edge = vec![1.0f32];
    edge.extend(codes.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    edge.extend(codes.iter().map(|c| -c));
    values.extend(edge);
    values.extend((0..37).map(|i| (i as f32 - 18.0) * 1e-3));
    let parts = nf4::quantize(&values);
    let deq = nf4::dequantize_parts(&parts, values.len());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nf4.safetensors");
    Tensor::write_safetensors(
        &[
            ("values", Tensor::from_slice(&values)),
            ("packed", Tensor::from_slice(&parts.packed)),
            ("absmax_q", Tensor::from_slice(&parts.absmax_q)),
            ("absmax_scale", Tensor::from_slice(&parts.absmax_scale)),
            ("absmax_mean", Tensor::from_slice(&[parts.absmax_mean])),
            ("dequantized", Tensor::from_slice(&deq)),
        ],
        &path,
    )
    .unwrap();
    let out = std::process::Command::new(support::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nf4_reference.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "NumPy reference disagrees: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

/// The NF4 model computes exactly what a full-precision model with NF4-rounded projection weights computes
/// (the loader quantizes q|k|v and gate|up as one matrix each, so the reference rounds them the same way).
#[test]
fn nf4_model_runs_on_the_dequantized_weights() {
    let dir = fixture("tiny-llama31-gqa-tied");
    let ck = Checkpoint::open(&dir).unwrap();
    let layers = ck.config().num_hidden_layers;
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut rounded = std::collections::BTreeSet::new();
    for layer in 0..layers {
        for group in [
            &["q_proj", "k_proj", "v_proj"][..],
            &["o_proj"],
            &["gate_proj", "up_proj"],
            &["down_proj"],
        ] {
            let names: Vec<String> = group
                .iter()
                .map(|p| format!("{}.weight", fireweave_ai::train::model::projection_path(layer, p)))
                .collect();
            let views: Vec<_> = names.iter().map(|n| ck.tensor(n).unwrap()).collect();
            let values: Vec<f32> = views.iter().flat_map(|v| v.to_f32()).collect();
            let mut back = nf4::dequantize_parts(&nf4::quantize(&values), values.len()).into_iter();
            for (name, view) in names.iter().zip(&views) {
                let part: Vec<f32> = back.by_ref().take(view.numel()).collect();
                let shape: Vec<i64> = view.shape.iter().map(|&d| d as i64).collect();
                tensors.push((name.clone(), Tensor::from_slice(&part).view(shape.as_slice())));
                rounded.insert(name.clone());
            }
        }
    }
    for name in ck.names().filter(|n| !rounded.contains(*n)) {
        let view = ck.tensor(name).unwrap();
        tensors.push((
            name.to_owned(),
            Tensor::from_slice(&view.to_f32())
                .view(view.shape.iter().map(|&d| d as i64).collect::<Vec<_>>().as_slice()),
        ));
    }
    Tensor::write_safetensors(&tensors, tmp.path().join("model.safetensors")).unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    let rounded_ck = Checkpoint::open(tmp.path()).unwrap();

    let ids = Tensor::from_slice(&support::reference_ids("tiny-llama31-gqa-tied")).unsqueeze(0);
    let q = Llama::load(&ck, Kind::Float, Device::Cpu, true).unwrap();
    let reference = Llama::load(&rounded_ck, Kind::Float, Device::Cpu, false).unwrap();
    let (a, b) = tch::no_grad(|| (q.logits(&ids, None), reference.logits(&ids, None)));
    let diff = (&a - &b).abs().max().double_value(&[]);
    eprintln!("NF4 model vs f32 model on NF4-rounded weights: max |diff| {diff:.2e}");
    assert!(diff < 1e-5, "{diff}");
}

/// QLoRA's premise, on a real (small, so quantization-sensitive) model: the NF4 base stays close to the f32
/// one in a quarter of the memory. Measured: cosine 0.917, greedy agreement 0.72 on SmolLM2-135M (whose
/// weights already came through a 4-bit GGUF); the bounds leave room only for float noise.
#[test]
fn nf4_base_stays_close_to_the_f32_model() {
    let ck = Checkpoint::open(&fixture("smollm2-135m")).unwrap();
    let reference = reference("smollm2-135m");
    let ids = reference["input_ids"].unsqueeze(0);
    let full = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    let q = Llama::load(&ck, Kind::Float, Device::Cpu, true).unwrap();
    let (fb, qb) = (full.weight_bytes(), q.weight_bytes());
    eprintln!("frozen weights: f32 {} MiB, NF4 {} MiB", fb >> 20, qb >> 20);
    assert!(qb * 2 < fb, "NF4 layers should hold far less memory");
    let (a, b) = tch::no_grad(|| (full.logits(&ids, None), q.logits(&ids, None)));
    let cos = ((&a * &b).sum(Kind::Double) / (a.norm() * b.norm())).double_value(&[]);
    let agree = a
        .argmax(-1, false)
        .eq_tensor(&b.argmax(-1, false))
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    let agree = agree.double_value(&[]);
    eprintln!("NF4 vs f32 SmolLM2 logits: cosine {cos:.5}, greedy agreement {agree:.3}");
    assert!(cos > 0.9, "cosine {cos}");
    assert!(agree >= 0.65, "greedy agreement {agree}");
}
