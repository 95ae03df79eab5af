//! The evaluation gate as `fireweave-ai run` applies it, on the tiny Llama 3.1 fixture and the shipped sample:
//! a healthy run passes and serves; a diverged run (a learning rate far too high) fails the gate and nothing
//! is served; a ModelServing whose Modelfile template is not the trained format's is refused before serving.
#![cfg(all(feature = "train", feature = "serve"))]

#[path = "train_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sample data, a TrainingRun on `base` exporting `gguf` (a YAML list), and a ModelServing of its Q8_0.
fn manifests(dir: &Path, base: &str, learning_rate: &str, gguf: &str, serving_extra: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    // The base model beside the manifest, named by a relative path as the quickstart's is.
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::os::unix::fs::symlink(support::fixture(base), dir.join("models").join(base)).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/fireweave");
    std::fs::write(
        &path,
        format!(
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {{name: d}}\nspec:\n  sources: [{{path: {}}}]\n---\n\
             apiVersion: ai.fireweave.io/v1alpha1\nkind: TrainingRun\nmetadata: {{name: t}}\nspec:\n  baseModel: {{path: models/{base}}}\n  datasetRef: {{name: d}}\n  baseQuantization: none\n  lora: {{r: 4, alpha: 8}}\n  hyperparameters: {{epochs: 1, batchSize: 2, gradientAccumulation: 1, maxSteps: 3, warmupSteps: 0, maxSeqLength: 1024, learningRate: {learning_rate}}}\n  export: {{merge: true, gguf: {gguf}}}\n  evaluation: {{maxExamples: 6}}\n---\n\
             apiVersion: ai.fireweave.io/v1alpha1\nkind: ModelServing\nmetadata: {{name: s}}\nspec:\n  model: {{trainingRunRef: {{name: t, quantization: Q8_0}}}}\n  engine: builtin\n{serving_extra}",
            sample.display(),
        ),
    )
    .unwrap();
    path
}

/// Runs from the manifest's folder with `--artifacts` relative to it, as a user typing `--artifacts out` would
/// (the base model's GGUF for the evaluation is built from links, which once dangled for a relative path).
fn run(manifest: &Path, artifacts: &Path) -> Output {
    let here = manifest.parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
        .current_dir(here)
        .args(["run", "--no-serve", "--device", "cpu", "--threads", "2", "--artifacts"])
        .arg(artifacts.strip_prefix(here).unwrap_or(artifacts))
        .arg(manifest.strip_prefix(here).unwrap())
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
    let out = run(
        &manifests(tmp.path(), "tiny-llama31", "0.001", "[F16, Q8_0, Q4_K_M]", ""),
        &artifacts,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_status = status(&artifacts, "trainingrun-t.yaml");
    let e = &run_status["status"]["evaluation"];
    assert_eq!(e["passed"], true, "{e:#}");
    // llama.cpp's loss on each GGUF file beside the trainer's on the unquantized f32 adapter (the two
    // implementations checking each other): F16 within 0.001 nats, Q8_0 within 0.01 (here −0.00001 and −0.0006);
    // Q4_K_M is reported (+0.004), held only to its gate allowance.
    let increase = |q: &str| -> f64 {
        let g = e["gguf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["quantization"] == q)
            .unwrap_or_else(|| panic!("{q} evaluated: {e:#}"));
        assert_eq!(g["templateMatch"], true, "{q}");
        g["lossIncrease"].as_f64().unwrap()
    };
    let (f16, q8, q4) = (increase("F16"), increase("Q8_0"), increase("Q4_K_M"));
    eprintln!("loss over the f32 adapter: F16 {f16:+.5}, Q8_0 {q8:+.5}, Q4_K_M {q4:+.5}");
    assert!(f16.abs() < 0.001, "F16 loss increase {f16}");
    assert!(q8.abs() < 0.01, "Q8_0 loss increase {q8}");
    assert_eq!(run_status["status"]["passed"]["attempt"], 1);
    assert!(stdout.contains("gate: passed") && stdout.contains("Q8_0"), "{stdout}");
    assert_eq!(
        status(&artifacts, "modelserving-s.yaml")["status"]["servedModel"]["evaluation"],
        "passed (attempt 1)"
    );
    // The worker's own command on the same run, from the manifest's folder with relative paths (the base
    // model's GGUF is built from links, which dangled when the model folder was a relative path).
    let manifest = std::fs::read_to_string(tmp.path().join("pipeline.yaml")).unwrap();
    let run_doc = manifest.split("---\n").nth(1).unwrap();
    std::fs::write(tmp.path().join("run.yaml"), run_doc).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
        .current_dir(tmp.path())
        .args([
            "evaluate",
            "--spec",
            "run.yaml",
            "--artifacts",
            "artifacts",
            "--threads",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fireweave-ai evaluate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A run with a learning rate far too high: the adapter makes the held-out answers less likely than the base
    // model did, the gate fails, and the serving refuses the model. On a real model (SmolLM2-135M: +13 nats);
    // the tiny fixture's random weights predict a near-uniform distribution that such a run barely moves, up or
    // down depending on the CPU's float kernels, so it cannot show a divergence.
    let diverged = tempfile::tempdir().unwrap();
    let artifacts = diverged.path().join("artifacts");
    let out = run(
        &manifests(diverged.path(), "smollm2-135m", "30.0", "[Q8_0]", ""),
        &artifacts,
    );
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
    let out = run(
        &manifests(tmp.path(), "tiny-llama31", "0.001", "[Q8_0]", &extra),
        &artifacts,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served with a mismatched template");
    assert!(
        stderr.contains("spec.modelfile.template: the model was trained in the llama3 chat format and this template is a chatml template"),
        "{stderr}"
    );
}

// Only the SmolLM2 GGUF's path is used here.
#[allow(dead_code)]
#[path = "serve/common.rs"]
mod serve_common;

/// A conversation's token ids with the trainer's targets: only the answer's tokens carry a target (the next
/// token at each position), as `train::data::Example` holds them.
fn example(g: &fireweave_ai::eval::llama::Gguf, prompt: &str, answer: &str) -> fireweave_ai::train::data::Example {
    let (p, a) = (g.tokenize(prompt), g.tokenize(answer));
    let ids: Vec<i64> = p.iter().chain(&a).copied().collect();
    let mut targets = vec![fireweave_ai::train::data::IGNORE; ids.len()];
    targets[p.len() - 1..ids.len() - 1].copy_from_slice(&ids[p.len()..]);
    fireweave_ai::train::data::Example { ids, targets }
}

/// The loss pass decodes examples in token order and reuses the KV cache of the prefix each shares with the
/// previous one; its figure must be what decoding every example on its own gives (up to the float noise of
/// other batch shapes), over every target position.
#[test]
fn the_loss_pass_reusing_shared_prefixes_equals_each_example_alone() {
    let g = fireweave_ai::eval::llama::Gguf::load(&serve_common::smollm2_gguf(), 2).unwrap();
    let system = "<|im_start|>system\nYou are a network security expert.<|im_end|>\n";
    let turn = |q: &str| format!("{system}<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    let port = |n: u32| turn(&format!("How do I block port {n}?"));
    let ssh = "Restrict SSH to the bastion's address.<|im_end|>\n";
    let conversations: Vec<(String, &str)> = vec![
        (port(23), "Deny TCP 23 inbound on the edge ACL.<|im_end|>\n"),
        (port(22), ssh),
        // The same prompt with another answer: their shared prefix reaches into the targets' neighbourhood.
        (port(23), "Disable telnet on every device.<|im_end|>\n"),
        // A duplicate, and one that extends another's prompt.
        (port(22), ssh),
        (
            format!(
                "{}Thanks.<|im_end|>\n<|im_start|>user\nAnd port 3389?<|im_end|>\n<|im_start|>assistant\n",
                port(22)
            ),
            "Block RDP from the internet.<|im_end|>\n",
        ),
        (
            turn("What is a SIEM?"),
            "A system that collects and correlates security logs.<|im_end|>\n",
        ),
    ];
    let examples: Vec<_> = conversations.iter().map(|(p, a)| example(&g, p, a)).collect();
    let together = g.loss(&examples).unwrap();
    let (mut sum, mut tokens) = (0.0, 0);
    for e in &examples {
        let alone = g.loss(std::slice::from_ref(e)).unwrap();
        sum += alone.sum;
        tokens += alone.tokens;
    }
    assert_eq!(together.tokens, tokens);
    assert!(
        (together.sum - sum).abs() < 1e-3 * sum,
        "with shared prefixes {} vs alone {sum}",
        together.sum
    );

    // Greedy generation over prompts sharing prefixes, one repeated after others were decoded: the same
    // answer both times, in the prompts' order.
    let prompts: Vec<Vec<i64>> = ["How do I block port 23?", "What is a SIEM?", "How do I block port 23?"]
        .iter()
        .map(|q| g.tokenize(&turn(q)))
        .collect();
    let answers = g.generate_all(&prompts, 12, |_: &str| true).unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0], answers[2]);
    assert!(!answers[0].is_empty(), "{answers:?}");
}
