//! `fireweave-ai train-bench` on random weights: the path a GPU measurement takes (random Llama-shaped
//! checkpoint, written once and reused; dtype and NF4 switches), run here at toy size on the CPU.
#![cfg(feature = "train")]

use std::path::Path;
use std::process::{Command, Output};

fn bench(cache: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fireweave-ai"))
        .args([
            "train-bench",
            "--random",
            "tiny",
            "--threads",
            "1",
            "--steps",
            "2",
            "--seq",
            "32",
        ])
        .args(extra)
        .env("FIREWEAVE_CACHE", cache)
        .output()
        .unwrap()
}

/// The tokens/s figure of our side, from the bench's output.
fn our_rate(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("fireweave-ai (tch): ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tokens/s line in {stdout}"))
}

#[test]
fn random_checkpoint_is_written_once_and_trains_dense_and_nf4() {
    let cache = tempfile::tempdir().unwrap();
    // transformers + peft train on the same random checkpoint: it is an ordinary HF checkpoint for them too.
    let out = bench(cache.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("transformers+peft: ") && stdout.contains("ours/theirs: "),
        "{stdout}"
    );
    let dir = cache.path().join("bench-models/tiny-llama31-random");
    assert!(stdout.contains(&format!("model={} ", dir.display())), "{stdout}");
    assert!(stdout.contains("dtype=Float nf4=false recompute=false"), "{stdout}");
    assert!(our_rate(&stdout) > 0.0);
    assert!(stdout.contains("frozen base alone"), "{stdout}");

    // A complete Hugging Face checkpoint of the configured shapes, and no temporary folder left beside it.
    let ck = fireweave_ai::hf::Checkpoint::open(&dir).unwrap();
    ck.validate_shapes().unwrap();
    assert_eq!(ck.config().vocab_size, 128_256);
    assert_eq!(ck.config().num_hidden_layers, 2);
    let names: Vec<String> = std::fs::read_dir(cache.path().join("bench-models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["tiny-llama31-random"]);

    // The second run reuses it untouched, with NF4 base weights and recomputed layers this time.
    let shard = dir.join("model.safetensors");
    let written = std::fs::metadata(&shard).unwrap().modified().unwrap();
    let out = bench(cache.path(), &["--nf4", "--recompute", "--ours-only"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nf4=true recompute=true"), "{stdout}");
    assert!(our_rate(&stdout) > 0.0);
    assert_eq!(std::fs::metadata(&shard).unwrap().modified().unwrap(), written);
}

#[test]
fn random_weights_refuse_the_chat_workload_before_writing_anything() {
    let cache = tempfile::tempdir().unwrap();
    let out = bench(cache.path(), &["--workload", "chat"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--workload synthetic"), "{stderr}");
    assert!(!cache.path().join("bench-models").exists());
}
