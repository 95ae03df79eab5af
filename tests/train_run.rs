//! The `fireweave-ai train` binary end to end: a real kill and resume, and SmolLM2 learning a Q&A set.
#![cfg(feature = "train")]

#[path = "train_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::fixture;

fn train_cmd(manifest: &Path, artifacts: &Path, dataset: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"));
    c.args(["train", "--device", "cpu", "--threads", "1", "--metrics-addr", "127.0.0.1:0", "--no-progress"])
        .arg("--spec")
        .arg(manifest)
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--dataset")
        .arg(dataset)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    c
}

/// Runs to completion and returns the JSON result (the last stdout line).
fn train(manifest: &Path, artifacts: &Path, dataset: &Path) -> serde_json::Value {
    let out = train_cmd(manifest, artifacts, dataset).output().unwrap();
    assert!(out.status.success(), "train failed: {}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn run_dir(artifacts: &Path) -> PathBuf {
    artifacts.join("runs/test/t")
}

#[test]
fn killed_run_resumes_to_the_bitwise_same_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let dataset = tmp.path().join("data");
    support::write_qa_dataset(&dataset, 4);
    let manifest = tmp.path().join("run.yaml");
    let hp = "epochs: 2, batchSize: 2, gradientAccumulation: 2, learningRate: 0.001, warmupSteps: 3, maxSeqLength: 96";
    support::write_manifest(&manifest, &fixture("tiny-llama31"), hp, 3, false);

    let whole = tmp.path().join("whole");
    let result = train(&manifest, &whole, &dataset);
    assert_eq!(result["steps"], 24);

    let resumed = tmp.path().join("resumed");
    let mut child = train_cmd(&manifest, &resumed, &dataset).stdout(Stdio::null()).spawn().unwrap();
    let checkpoints = run_dir(&resumed).join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let has_checkpoint = std::fs::read_dir(&checkpoints)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false);
        if has_checkpoint {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "run ended before its first checkpoint");
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up, as with a preempted pod
    child.wait().unwrap();
    assert!(
        !run_dir(&resumed).join("adapter").exists(),
        "the run finished before the kill landed: the test did not test resuming"
    );
    let result = train(&manifest, &resumed, &dataset);
    assert_eq!(result["steps"], 24);
    let a = std::fs::read(run_dir(&whole).join("adapter/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(run_dir(&resumed).join("adapter/adapter_model.safetensors")).unwrap();
    assert!(a == b, "resumed adapter differs from the uninterrupted run's");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&resumed).join("report/metrics.json")).unwrap()).unwrap();
    assert_eq!(report["losses"].as_array().unwrap().len(), 24, "loss history survives the restart");
}

#[test]
fn smollm2_learns_the_fireweave_set() {
    use fireweave_ai::chat::{ChatTemplate, Message};
    use fireweave_ai::hf::Checkpoint;
    use fireweave_ai::train::lora::{LoraConfig, LoraStore};
    use fireweave_ai::train::model::Llama;
    use tch::{Device, Kind, Tensor};

    let model_dir = fixture("smollm2-135m");
    let tmp = tempfile::tempdir().unwrap();
    let dataset = tmp.path().join("data");
    support::write_qa_dataset(&dataset, 2);
    let manifest = tmp.path().join("run.yaml");
    let hp = "epochs: 3, batchSize: 4, gradientAccumulation: 1, learningRate: 0.001, warmupSteps: 2, maxSeqLength: 128";
    support::write_manifest(&manifest, &model_dir, hp, 100, false);
    let result = train(&manifest, tmp.path(), &dataset);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(tmp.path()).join("report/metrics.json")).unwrap()).unwrap();
    let evals: Vec<f64> = report["evals"].as_array().unwrap().iter().map(|e| e["loss"].as_f64().unwrap()).collect();
    eprintln!("eval loss per epoch: {evals:?}; result {result}");
    assert_eq!(evals.len(), 3);
    assert!(evals[2] < evals[0] * 0.8, "eval loss did not drop: {evals:?}");

    // The adapter, loaded back, answers a trained question with its trained answer.
    let ck = Checkpoint::open(&model_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu).unwrap();
    let mut lora = LoraStore::new(
        &model,
        LoraConfig {
            r: 8,
            alpha: 16.0,
            ..Default::default()
        },
    );
    let adapter = run_dir(tmp.path()).join("adapter/adapter_model.safetensors");
    lora.load_values(&Tensor::read_safetensors(adapter).unwrap().into_iter().collect()).unwrap();
    let template = ChatTemplate::from_model_dir(&model_dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let (q, a) = support::QA[3];
    let prompt = template.render(&[Message::system(support::SYSTEM), Message::user(q)], &[], true).unwrap();
    let ids: Vec<i64> = tokenizer.encode(prompt, false).unwrap().get_ids().iter().map(|&i| i as i64).collect();
    let stop = tokenizer.token_to_id("<|im_end|>").unwrap() as i64;
    let decode = |ids: Vec<i64>| tokenizer.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false).unwrap();
    let before = decode(model.greedy(&ids, 24, &[stop], None));
    let after = decode(model.greedy(&ids, 24, &[stop], Some(&lora)));
    eprintln!("base: {before:?}\ntrained: {after:?}");
    let key = "PCI-DSS, SOC2, NIST 800-53";
    assert!(!before.contains(key), "the base model already knew the answer: the test proves nothing");
    assert!(a.contains(key) && after.contains(key), "trained answer not reproduced: {after:?}");
}
