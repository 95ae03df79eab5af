//! A worker step that fails says why, wherever it runs: the Job's termination message (what the operator
//! copies into the CR status) and a non-zero exit, and `fireweave-ai run`'s status file. Faults are injected
//! with `FIREWEAVE_INJECT_FAULT` at points where the step has done real work: a libtorch error through tch's
//! panicking API in the training loop, a panic in the middle of curation, a merged checkpoint that is not
//! there for the quantizer.
#![cfg(all(feature = "train", feature = "serve"))]

#[path = "train_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/fireweave")
}

fn dataset_manifest(dir: &Path) -> PathBuf {
    let path = dir.join("dataset.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {{name: d}}\nspec:\n  sources: [{{path: {}}}]\n",
            sample_data().display()
        ),
    )
    .unwrap();
    path
}

fn training_manifest(dir: &Path) -> PathBuf {
    let path = dir.join("run.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: t}}\nspec:\n  baseModel: {{path: {}}}\n  datasetRef: {{name: d}}\n  baseQuantization: none\n  lora: {{r: 4, alpha: 8}}\n  hyperparameters: {{epochs: 1, batchSize: 2, gradientAccumulation: 1, maxSteps: 2, maxSeqLength: 128}}\n  export: {{merge: true, gguf: [Q8_0]}}\n",
            support::fixture("tiny-llama31").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `fireweave-ai <args>` with the fault injected and an existing termination-log file, as the kubelet
/// provides one; returns the output and the message.
fn worker(args: &[&str], fault: &str, log: &Path) -> (Output, String) {
    std::fs::write(log, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
        .args(args)
        .arg("--termination-log")
        .arg(log)
        .env("FIREWEAVE_INJECT_FAULT", fault)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (out, std::fs::read_to_string(log).unwrap())
}

#[test]
fn each_worker_step_fails_with_its_reason_in_the_termination_message() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let log = tmp.path().join("termination-log");
    let ds = dataset_manifest(tmp.path());
    let a = artifacts.to_str().unwrap();

    let (out, message) = worker(
        &["dataset", "--spec", ds.to_str().unwrap(), "--artifacts", a],
        "dataset",
        &log,
    );
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.starts_with("dataset failed: panicked at src/dataset/mod.rs:")
            && message.contains("injected fault while curating 164 records"),
        "{message}"
    );
    // Nothing half-written looks like a build.
    assert!(!artifacts.join("datasets/default/d").exists() || no_builds(&artifacts.join("datasets/default/d")));

    // The same step without the fault, to give the trainer its input.
    let (out, message) = worker(&["dataset", "--spec", ds.to_str().unwrap(), "--artifacts", a], "", &log);
    assert!(out.status.success(), "{message}");
    let result: serde_json::Value = serde_json::from_str(&message).expect("the result is JSON");
    assert!(result["artifact"]["digest"].as_str().unwrap().starts_with("sha256:"));

    let run = training_manifest(tmp.path());
    let train_args = [
        "train",
        "--spec",
        run.to_str().unwrap(),
        "--artifacts",
        a,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--no-progress",
    ];
    let (out, message) = worker(&train_args, "train", &log);
    assert_eq!(out.status.code(), Some(1), "{message}");
    // libtorch's own words, not a bare abort.
    assert!(
        message.starts_with("train failed: panicked at ") && message.contains("cannot be multiplied"),
        "{message}"
    );
    assert!(!message.contains('\n'), "the operator shows one line: {message}");

    let (out, message) = worker(
        &["quantize", "--spec", run.to_str().unwrap(), "--artifacts", a],
        "quantize",
        &log,
    );
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.starts_with("quantize failed: ") && message.contains("injected-fault"),
        "{message}"
    );
}

fn no_builds(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .all(|e| e.file_name() == "latest" || e.file_name().to_string_lossy().starts_with(".tmp-"))
}

/// `fireweave-ai run` reports a failed step in the resource's status file, in the CR status shape.
#[test]
fn a_local_run_records_the_failed_step_in_its_status() {
    for (fault, kind, file) in [
        ("dataset", "Dataset", "dataset-d.yaml"),
        ("train", "TrainingRun", "trainingrun-t.yaml"),
        ("quantize", "TrainingRun", "trainingrun-t.yaml"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        dataset_manifest(tmp.path());
        training_manifest(tmp.path());
        let artifacts = tmp.path().join("artifacts");
        let out = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
            .args(["run", "--no-serve", "--device", "cpu", "--threads", "1"])
            .arg(tmp.path().join("dataset.yaml"))
            .arg(tmp.path().join("run.yaml"))
            .arg("--artifacts")
            .arg(&artifacts)
            .env("FIREWEAVE_INJECT_FAULT", fault)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{fault}: the run succeeded");
        assert!(stderr.contains(&format!("{fault} failed: ")), "{fault}: {stderr}");
        let status: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(artifacts.join("status/default").join(file)).unwrap())
                .unwrap();
        assert_eq!(status["kind"], kind);
        assert_eq!(status["status"]["phase"], "Failed", "{fault}: {status:#}");
        let stalled = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Stalled")
            .expect("a Stalled condition");
        assert_eq!(stalled["status"], "True");
        assert!(
            stalled["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{fault} failed: ")),
            "{fault}: {stalled:#}"
        );
    }
}
