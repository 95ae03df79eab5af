//! Our adapters are PEFT adapters: peft loads the export and computes our logits; the merged checkpoint is
//! base + scaling·B·A and transformers computes the same logits from it; and a few training steps in peft,
//! from the same adapter on the same batches, give our losses and our adapter.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use fireweave_ai::api::training_run::LoraSpec;
use fireweave_ai::chat::{ChatTemplate, Message};
use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::data::{Conversation, Encoder, Example};
use fireweave_ai::train::lora::{LoraStore, peft_name};
use fireweave_ai::train::model::Llama;
use fireweave_ai::train::optim::AdamW;
use fireweave_ai::train::{data, export, weights};
use std::collections::BTreeMap;
use std::path::Path;
use support::fixture;
use tch::{Device, Kind, Tensor};

fn lora_spec(r: u32, alpha: u32) -> LoraSpec {
    LoraSpec {
        r,
        alpha,
        ..Default::default()
    }
}

/// libtorch's random generator and its thread settings are per process, and the two tests here both draw
/// from the first and set or read the second; run in parallel, each one's adapter came out of the other's
/// draws, so every run compared another instance, and one full run diverged from peft far beyond what any
/// instance drawn alone does (2,612 of 27,136 elements; 24 seeds alone: at most 9). They take turns.
static LIBTORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn libtorch() -> std::sync::MutexGuard<'static, ()> {
    LIBTORCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An adapter with every B non-zero (fresh B is zero, and a mis-loaded tensor would not show).
fn random_adapter(model: &Llama, spec: &LoraSpec, seed: i64) -> (LoraStore, BTreeMap<String, Tensor>) {
    tch::manual_seed(seed);
    let mut lora = LoraStore::new(model, spec);
    let values: BTreeMap<String, Tensor> = lora
        .named()
        .into_iter()
        .map(|(n, t)| (n, t.detach().randn_like() * 0.05))
        .collect();
    lora.load_values(&values).unwrap();
    (lora, values)
}

fn run_python(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let out = std::process::Command::new(support::python())
        .arg(format!("{}/tests/fixtures/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exported_adapter_and_merge_match_peft_and_transformers() {
    let _turn = libtorch();
    let base_dir = fixture("tiny-llama31-gqa-tied");
    let ck = Checkpoint::open(&base_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    let (lora, values) = random_adapter(&model, &lora_spec(4, 8), 7);

    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("adapter");
    let merged = tmp.path().join("merged");
    export::save_peft(&adapter, &lora, &base_dir.display().to_string(), None).unwrap();
    let (_, template) = fireweave_ai::train::run::training_template(ck.dir()).unwrap();
    export::save_merged(&merged, &ck, &lora, template.source()).unwrap();

    // Merged weights are exactly base + (alpha/r)·B·A (formed in f32, stored in the base's f32).
    let merged_ck = Checkpoint::open(&merged).unwrap();
    for layer in 0..model.config.num_hidden_layers {
        for proj in fireweave_ai::train::spec::PROJECTIONS {
            let name = format!("{}.weight", fireweave_ai::train::model::projection_path(layer, proj));
            let base = weights::load(&ck, &name, Kind::Float, Device::Cpu).unwrap();
            let got = weights::load(&merged_ck, &name, Kind::Float, Device::Cpu).unwrap();
            let a = &values[&peft_name(layer, proj, 'A')];
            let b = &values[&peft_name(layer, proj, 'B')];
            let want = base + b.matmul(a) * 2.0;
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name}: merged differs from base + scaling·B·A by {diff}");
        }
    }
    for name in ["model.embed_tokens.weight", "model.norm.weight"] {
        let a = weights::load(&ck, name, Kind::Float, Device::Cpu).unwrap();
        let b = weights::load(&merged_ck, name, Kind::Float, Device::Cpu).unwrap();
        assert!(a.equal(&b), "{name} changed in the merge");
    }

    let ids: Vec<i64> = vec![128000, 128006, 882, 128007, 271, 9906, 1917, 0, 25, 220, 16, 128009];
    let input = Tensor::from_slice(&ids).unsqueeze(0);
    let ours = tch::no_grad(|| model.logits(&input, Some(&lora))).squeeze_dim(0);
    let base_only = tch::no_grad(|| model.logits(&input, None)).squeeze_dim(0);
    assert!(
        (&ours - &base_only).abs().max().double_value(&[]) > 1e-3,
        "adapter has no effect: test is void"
    );
    let out = tmp.path().join("peft.safetensors");
    let ids_json = serde_json::to_string(&ids).unwrap();
    run_python("peft_logits.py", &[&base_dir, &adapter, &ids_json, &out, &merged]);
    let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    // Tolerance: absolute, f32 logits of magnitude ~1; the sums run in another order than torch's.
    for key in ["peft_logits", "merged_logits"] {
        let diff = (&ours - &theirs[key]).abs().max().double_value(&[]);
        eprintln!("{key}: max |ours − theirs| = {diff:.3e}");
        assert!(diff < 1e-4, "{key}: differs from our adapted model by {diff}");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_u64(), cfg["lora_alpha"].as_u64()),
        (Some("LORA"), Some(4), Some(8))
    );
}

/// Batches of FireWeave Q&A examples (two per batch, different lengths, so padding is exercised).
fn qa_batches(model_dir: &Path, steps: usize) -> Vec<Vec<Example>> {
    let template = ChatTemplate::from_model_dir(model_dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let enc = Encoder {
        template: &template,
        tokenizer: &tokenizer,
        max_len: 256,
        system: "",
    };
    let convs: Vec<Conversation> = support::QA
        .iter()
        .map(|(q, a)| Conversation {
            messages: vec![
                Message::system(support::SYSTEM),
                Message::user(*q),
                Message::assistant(*a),
            ],
            tools: Vec::new(),
        })
        .collect();
    let (examples, _) = enc.encode_all(&convs).unwrap();
    examples.chunks(2).take(steps).map(<[Example]>::to_vec).collect()
}

/// Our training steps (with and without layer recomputation) against peft + torch AdamW on the same
/// batches from the same adapter.
#[test]
fn training_steps_match_peft() {
    let _turn = libtorch();
    let base_dir = fixture("tiny-llama31-gqa-tied");
    let ck = Checkpoint::open(&base_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    tch::set_num_threads(1);
    let spec = lora_spec(4, 8);
    let (lora, start) = random_adapter(&model, &spec, 11);
    let batches = qa_batches(&base_dir, 4);
    let (lr, wd, max_norm) = (1e-3, 0.01, 1.0);

    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("start");
    export::save_peft(&adapter, &lora, &base_dir.display().to_string(), None).unwrap();
    let batches_path = tmp.path().join("batches.json");
    let json: Vec<serde_json::Value> = batches
        .iter()
        .map(|b| {
            serde_json::json!(
                b.iter()
                    .map(|e| serde_json::json!({"ids": e.ids, "labels": e.labels()}))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    std::fs::write(&batches_path, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = tmp.path().join("theirs.safetensors");
    let (lr_s, wd_s, norm_s) = (lr.to_string(), wd.to_string(), max_norm.to_string());
    run_python(
        "peft_train.py",
        &[&base_dir, &adapter, &batches_path, &lr_s, &wd_s, &norm_s, &out],
    );
    let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let their_losses: Vec<f64> = Vec::try_from(&theirs["losses"]).unwrap();

    for recompute in [false, true] {
        let mut lora = LoraStore::new(&model, &spec);
        lora.load_values(&start).unwrap();
        let params = lora.parameters();
        let mut opt = AdamW::new(&params, wd);
        let mut losses = Vec::new();
        for b in &batches {
            let refs: Vec<&Example> = b.iter().collect();
            let (ids, targets, bs, s) = data::collate(&refs);
            let trained: usize = b.iter().map(Example::trained_tokens).sum();
            let l = model.forward_backward(
                &Tensor::from_slice(&ids).view([bs, s]),
                &Tensor::from_slice(&targets).view([bs, s]),
                &lora,
                1.0 / trained as f64,
                recompute,
                0,
            );
            losses.push(l.sum / trained as f64);
            // The trainer's own optimizer path (fused on CPU).
            opt.step_clipped(&params, lr, max_norm);
        }
        eprintln!("recompute={recompute}: losses ours {losses:?} peft {their_losses:?}");
        for (a, b) in losses.iter().zip(&their_losses) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "recompute={recompute}: loss {a} vs peft {b}"
            );
        }
        // Adam normalizes each element's step (≈ lr·sign(gradient) early on), so an element whose gradient is
        // at float-noise level can take a visibly different step; every other element must agree closely.
        let (mut worst, mut loose, mut total, mut moved) = (0f64, 0i64, 0i64, 0f64);
        for (name, t) in lora.named() {
            let d = (t - &theirs[&name]).abs();
            worst = worst.max(d.max().double_value(&[]));
            loose += d.gt(1e-6).sum(Kind::Int64).int64_value(&[]);
            total += d.numel() as i64;
            moved = moved.max((t - &start[&name]).abs().max().double_value(&[]));
        }
        eprintln!(
            "recompute={recompute}: max |adapter ours − peft| = {worst:.3e} (largest move {moved:.3e}); {loose} of {total} elements differ by > 1e-6"
        );
        assert!(
            loose * 1000 <= total,
            "recompute={recompute}: {loose} of {total} adapter elements differ from peft's"
        );
        assert!(
            worst <= 0.02 * moved,
            "recompute={recompute}: adapters differ by {worst} (steps moved {moved})"
        );
    }
}
