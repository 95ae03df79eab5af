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
    c.args([
        "train",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--no-progress",
    ])
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
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn run_dir(artifacts: &Path) -> PathBuf {
    artifacts.join("runs/test/t")
}

/// The highest step with a complete checkpoint folder (0 when none).
fn newest_checkpoint(checkpoints: &Path) -> usize {
    std::fs::read_dir(checkpoints)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("step-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Polls until a checkpoint newer than `after` exists; fails if the process exits first.
fn wait_for_checkpoint(child: &mut std::process::Child, checkpoints: &Path, after: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while newest_checkpoint(checkpoints) <= after {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before writing a checkpoint after step {after}"
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint after step {after} within 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
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

    // 1) SIGKILL right after the first checkpoint: no chance to clean up, as with a node that disappears.
    let resumed = tmp.path().join("resumed");
    let checkpoints = run_dir(&resumed).join("checkpoints");
    let mut child = train_cmd(&manifest, &resumed, &dataset)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut child, &checkpoints, 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let first = newest_checkpoint(&checkpoints);
    assert!(
        first < 24,
        "the run finished before the kill landed: the test did not test resuming"
    );

    // 2) SIGTERM (what a preempted Pod receives) once the restarted run has passed that checkpoint: it
    // checkpoints the step it is in and stops.
    let mut child = train_cmd(&manifest, &resumed, &dataset)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&mut child, &checkpoints, first);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "SIGTERM must not look like a finished run");
    let second = newest_checkpoint(&checkpoints);
    assert!(
        second > first && second < 24,
        "SIGTERM left checkpoint {second} (after {first})"
    );
    assert!(
        !run_dir(&resumed).join("adapter").exists(),
        "no adapter before training ends"
    );

    // 3) The third start finishes.
    let result = train(&manifest, &resumed, &dataset);
    assert_eq!(result["steps"], 24);
    let a = std::fs::read(run_dir(&whole).join("adapter/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(run_dir(&resumed).join("adapter/adapter_model.safetensors")).unwrap();
    assert!(a == b, "resumed adapter differs from the uninterrupted run's");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(&resumed).join("report/metrics.json")).unwrap()).unwrap();
    assert_eq!(
        report["losses"].as_array().unwrap().len(),
        24,
        "loss history survives the restart"
    );
}

#[test]
fn smollm2_learns_the_fireweave_set() {
    use fireweave_ai::api::training_run::LoraSpec;
    use fireweave_ai::chat::{ChatTemplate, Message};
    use fireweave_ai::hf::Checkpoint;
    use fireweave_ai::train::lora::LoraStore;
    use fireweave_ai::train::model::Llama;
    use tch::{Device, Kind, Tensor};

    let model_dir = fixture("smollm2-135m");
    let tmp = tempfile::tempdir().unwrap();
    let dataset = tmp.path().join("data");
    support::write_qa_dataset(&dataset, 2);
    let manifest = tmp.path().join("run.yaml");
    let hp = "epochs: 3, batchSize: 2, gradientAccumulation: 1, learningRate: 0.002, warmupSteps: 2, maxSeqLength: 128";
    support::write_manifest(&manifest, &model_dir, hp, 100, false);
    let result = train(&manifest, tmp.path(), &dataset);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir(tmp.path()).join("report/metrics.json")).unwrap()).unwrap();
    let evals: Vec<f64> = report["evals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    eprintln!("eval loss: base model, then after each epoch: {evals:?}; result {result}");
    assert_eq!(evals.len(), 4);
    assert!(
        evals[1] < evals[0] && evals[3] < evals[1] * 0.8,
        "eval loss did not drop: {evals:?}"
    );

    // The adapter, loaded back, answers a trained question with its trained answer.
    // The other test of this binary runs beside this one: one libtorch thread each.
    tch::set_num_threads(1);
    let ck = Checkpoint::open(&model_dir).unwrap();
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false).unwrap();
    let mut lora = LoraStore::new(
        &model,
        &LoraSpec {
            r: 8,
            alpha: 16,
            ..Default::default()
        },
    );
    let adapter = run_dir(tmp.path()).join("adapter/adapter_model.safetensors");
    lora.load_values(&Tensor::read_safetensors(adapter).unwrap().into_iter().collect())
        .unwrap();
    let template = ChatTemplate::from_model_dir(&model_dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
    let (q, a) = support::QA[3];
    let prompt = template
        .render(&[Message::system(support::SYSTEM), Message::user(q)], &[], true)
        .unwrap();
    let ids: Vec<i64> = tokenizer
        .encode(prompt, false)
        .unwrap()
        .get_ids()
        .iter()
        .map(|&i| i as i64)
        .collect();
    let stop = tokenizer.token_to_id("<|im_end|>").unwrap() as i64;
    let decode = |ids: Vec<i64>| {
        tokenizer
            .decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
            .unwrap()
    };
    let before = decode(model.greedy(&ids, 24, &[stop], None));
    let after = decode(model.greedy(&ids, 24, &[stop], Some(&lora)));
    eprintln!("base: {before:?}\ntrained: {after:?}");
    let key = "PCI-DSS, SOC2, NIST 800-53";
    assert!(
        !before.contains(key),
        "the base model already knew the answer: the test proves nothing"
    );
    assert!(
        a.contains(key) && after.contains(key),
        "trained answer not reproduced: {after:?}"
    );
}
