//! Our adapters are PEFT adapters: peft loads the export and computes our logits; the merged checkpoint is
//! base + scaling·B·A and transformers computes the same logits from it.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use fireweave_ai::hf::Checkpoint;
use fireweave_ai::train::export;
use fireweave_ai::train::lora::{LoraConfig, LoraStore, peft_name};
use fireweave_ai::train::model::Llama;
use fireweave_ai::train::weights;
use std::collections::BTreeMap;
use support::fixture;
use tch::{Device, Kind, Tensor};

#[test]
fn exported_adapter_and_merge_match_peft_and_transformers() {
    let base_dir = fixture("tiny-llama31-gqa-tied");
    let ck = Checkpoint::open(&base_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu).unwrap();
    tch::manual_seed(7);
    let config = LoraConfig {
        r: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let mut lora = LoraStore::new(&model, config);
    // B starts at zero; give it values so the adapter changes the output and a mis-loaded tensor shows.
    let values: BTreeMap<String, Tensor> =
        lora.named().into_iter().map(|(n, t)| (n, t.detach().randn_like() * 0.05)).collect();
    lora.load_values(&values).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("adapter");
    let merged = tmp.path().join("merged");
    export::save_peft(&adapter, &lora, &base_dir.display().to_string()).unwrap();
    export::save_merged(&merged, &ck, &lora).unwrap();

    // Merged weights are exactly base + (alpha/r)·B·A (formed in f32, stored in the base's f32).
    let merged_ck = Checkpoint::open(&merged).unwrap();
    for proj in ["q_proj", "down_proj"] {
        let path = fireweave_ai::train::model::projection_path(1, proj);
        let name = format!("{path}.weight");
        let base = weights::load(&ck, &name, Kind::Float, Device::Cpu).unwrap();
        let got = weights::load(&merged_ck, &name, Kind::Float, Device::Cpu).unwrap();
        let a = &values[&peft_name(1, proj, 'A')];
        let b = &values[&peft_name(1, proj, 'B')];
        let want = base + b.matmul(a) * 2.0;
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: merged differs from base + scaling·B·A by {diff}");
    }

    let ids: Vec<i64> = vec![128000, 128006, 882, 128007, 271, 9906, 1917, 0, 25, 220, 16, 128009];
    let ours = tch::no_grad(|| model.logits(&Tensor::from_slice(&ids).unsqueeze(0), Some(&lora))).squeeze_dim(0);
    let out = tmp.path().join("peft.safetensors");
    let status = std::process::Command::new(support::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/peft_logits.py"))
        .args([&base_dir, &adapter])
        .arg(serde_json::to_string(&ids).unwrap())
        .args([&out, &merged])
        .status()
        .unwrap();
    assert!(status.success(), "peft_logits.py failed");
    let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let base_only = tch::no_grad(|| model.logits(&Tensor::from_slice(&ids).unsqueeze(0), None)).squeeze_dim(0);
    assert!((&ours - &base_only).abs().max().double_value(&[]) > 1e-3, "adapter has no effect: test is void");
    for key in ["peft_logits", "merged_logits"] {
        let diff = (&ours - &theirs[key]).abs().max().double_value(&[]);
        eprintln!("{key}: max |ours − theirs| = {diff:.3e}");
        assert!(diff < 1e-4, "{key}: differs from our adapted model by {diff}");
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
}
