//! The evaluation gate as `fireweave-ai run` applies it, on the tiny Llama 3.1 fixture and the shipped sample:
//! a healthy run passes and serves; a diverged run (a learning rate far too high) fails the gate and nothing
//! is served; a ModelServing whose Modelfile template is not the trained format's is refused before serving.
#![cfg(all(feature = "train", feature = "serve"))]

#[path = "train_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifests(dir: &Path, learning_rate: &str, serving_extra: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/fireweave");
    std::fs::write(
        &path,
        format!(
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {{name: d}}\nspec:\n  sources: [{{path: {}}}]\n---\n\
             apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: t}}\nspec:\n  baseModel: {{path: {}}}\n  datasetRef: {{name: d}}\n  baseQuantization: none\n  lora: {{r: 4, alpha: 8}}\n  hyperparameters: {{epochs: 1, batchSize: 2, gradientAccumulation: 1, maxSteps: 3, warmupSteps: 0, maxSeqLength: 1024, learningRate: {learning_rate}}}\n  export: {{merge: true, gguf: [Q8_0]}}\n  evaluation: {{maxExamples: 6}}\n---\n\
             apiVersion: ai.fireweave.io/v1alpha1\nkind: ModelServing\nmetadata: {{name: s}}\nspec:\n  model: {{trainingRunRef: {{name: t, quantization: Q8_0}}}}\n  engine: builtin\n{serving_extra}",
            sample.display(),
            support::fixture("tiny-llama31").display()
        ),
    )
    .unwrap();
    path
}

fn run(manifest: &Path, artifacts: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
        .args(["run", "--no-serve", "--device", "cpu", "--threads", "2", "--artifacts"])
        .arg(artifacts)
        .arg(manifest)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn status(artifacts: &Path, file: &str) -> serde_json::Value {
    serde_yaml::from_str(&std::fs::read_to_string(artifacts.join("status/default").join(file)).unwrap()).unwrap()
}

#[test]
fn a_healthy_run_passes_and_a_diverged_one_is_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let out = run(&manifests(tmp.path(), "0.001", ""), &artifacts);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_status = status(&artifacts, "trainingrun-t.yaml");
    let e = &run_status["status"]["evaluation"];
    assert_eq!(e["passed"], true, "{e:#}");
    assert_eq!(e["gguf"][0]["templateMatch"], true);
    // llama.cpp's loss on the Q8_0 file agrees with the trainer's on the unquantized adapter.
    let increase = e["gguf"][0]["lossIncrease"].as_f64().unwrap();
    assert!(increase.abs() < 0.05, "Q8_0 loss increase {increase}");
    assert_eq!(run_status["status"]["passed"]["attempt"], 1);
    assert!(stdout.contains("gate: passed") && stdout.contains("Q8_0"), "{stdout}");
    assert_eq!(
        status(&artifacts, "modelserving-s.yaml")["status"]["servedModel"]["evaluation"],
        "passed (attempt 1)"
    );

    // The same run with a learning rate far too high: the adapter makes the held-out answers less likely than
    // the base model did, the gate fails, and the serving refuses the model.
    let diverged = tempfile::tempdir().unwrap();
    let artifacts = diverged.path().join("artifacts");
    let out = run(&manifests(diverged.path(), "30.0", ""), &artifacts);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a diverged model was accepted:\n{stdout}");
    assert!(
        stderr.contains("failed its evaluation gate") && stderr.contains("the run diverged"),
        "{stderr}"
    );
    assert!(stdout.contains("gate: FAILED"), "the table is printed: {stdout}");
    let run_status = status(&artifacts, "trainingrun-t.yaml");
    assert_eq!(run_status["status"]["phase"], "Failed");
    let evaluated = run_status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Evaluated")
        .expect("an Evaluated condition");
    assert_eq!(
        (evaluated["status"].as_str(), evaluated["reason"].as_str()),
        (Some("False"), Some("GateFailed"))
    );
}

#[test]
fn a_modelfile_template_of_another_format_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let chatml = fireweave_ai::chat::ChatFormat::Chatml.ollama_template();
    let extra = format!(
        "  modelfile:\n    template: {}\n",
        serde_json::to_string(chatml).unwrap()
    );
    let out = run(&manifests(tmp.path(), "0.001", &extra), &artifacts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served with a mismatched template");
    assert!(
        stderr.contains("spec.modelfile.template: the model was trained in the llama3 chat format and this template is a chatml template"),
        "{stderr}"
    );
}
