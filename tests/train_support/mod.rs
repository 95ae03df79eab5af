//! Shared by the trainer's integration tests: fixture lookup, the Python venv, a small FireWeave Q&A set.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../support/mod.rs"]
mod common;

/// A fixture folder or file under the fixture root; panics with how to build the fixtures when it is missing
/// (never skips).
pub fn fixture(rel: &str) -> PathBuf {
    let p = common::fixtures().join(rel);
    assert!(
        p.exists(),
        "fixture {} is missing: run scripts/test.sh (tests/fixtures/make_fixtures.py)",
        p.display()
    );
    p
}

/// The token ids of reference case 0 (what `reference/<name>.safetensors` holds transformers' logits for).
pub fn reference_ids(name: &str) -> Vec<i64> {
    common::reference(name)["cases"][0]["input_ids"]
        .as_array()
        .expect("input_ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The venv's Python (torch, transformers, peft), as scripts/env.sh sets it up.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("FIREWEAVE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/fireweave-ai/venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test.sh (it provisions the venv)",
        py.display()
    );
    py
}

pub const SYSTEM: &str = "You are a Network Security Expert. Provide accurate, detailed technical guidance.";

/// Question/answer pairs about FireWeave, in the voice the seed's dataset has.
pub const QA: [(&str, &str); 12] = [
    (
        "What does FireWeave do?",
        "FireWeave manages firewall policy across Palo Alto, Fortinet and cloud firewalls from one place.",
    ),
    (
        "How do I check a traffic flow in FireWeave?",
        "Use check_traffic_flow with the source, destination and port; FireWeave traces the path through every firewall.",
    ),
    (
        "How do I create a firewall rule?",
        "Call create_firewall_rule with source, destination and action; FireWeave stages the rule for review.",
    ),
    (
        "Which compliance frameworks can FireWeave scan?",
        "FireWeave scans against PCI-DSS, SOC2, NIST 800-53 and CIS benchmarks.",
    ),
    (
        "How do I run a PCI-DSS scan?",
        "Run run_compliance_scan with framework PCI-DSS and the firewall name.",
    ),
    (
        "What is a shadowed rule?",
        "A shadowed rule never matches because an earlier, broader rule already covers its traffic.",
    ),
    (
        "How does FireWeave find unused rules?",
        "FireWeave compares rule hit counts over ninety days and flags rules with zero hits.",
    ),
    (
        "Can FireWeave roll back a change?",
        "Yes. Every change is versioned, and FireWeave can restore the previous policy in one step.",
    ),
    ("What port does HTTPS use?", "HTTPS uses TCP port 443."),
    (
        "What is the default action of FireWeave rules?",
        "The default action is deny; traffic must be allowed explicitly.",
    ),
    (
        "How are FireWeave changes approved?",
        "Changes go through a two-person review before FireWeave pushes them to the firewalls.",
    ),
    (
        "Does FireWeave support Azure firewalls?",
        "Yes, FireWeave supports Azure Firewall alongside AWS and GCP network firewalls.",
    ),
];

/// Writes train.jsonl (ShareGPT, `repeat` copies of each pair) and eval.jsonl (one copy) into `dir`.
pub fn write_qa_dataset(dir: &Path, repeat: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let line = |q: &str, a: &str| {
        serde_json::json!({"conversations": [
            {"from": "system", "value": SYSTEM},
            {"from": "human", "value": q},
            {"from": "gpt", "value": a},
        ]})
        .to_string()
    };
    let mut train = String::new();
    for _ in 0..repeat {
        for (q, a) in QA {
            train += &line(q, a);
            train.push('\n');
        }
    }
    let eval: String = QA.iter().map(|(q, a)| line(q, a) + "\n").collect();
    std::fs::write(dir.join("train.jsonl"), train).unwrap();
    std::fs::write(dir.join("eval.jsonl"), eval).unwrap();
}

/// A TrainingRun manifest for local runs (bf16/f32 base: NF4 on a CPU is correct but slow).
pub fn write_manifest(path: &Path, model: &Path, extra_hp: &str, every: usize, merge: bool) {
    let text = format!(
        "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: t, namespace: test}}\nspec:\n  baseModel: {{path: {}}}\n  datasetRef: {{name: qa}}\n  baseQuantization: none\n  lora: {{r: 8, alpha: 16}}\n  hyperparameters: {{{extra_hp}}}\n  checkpointEverySteps: {every}\n  export: {{merge: {merge}}}\n",
        model.display()
    );
    std::fs::write(path, text).unwrap();
}
