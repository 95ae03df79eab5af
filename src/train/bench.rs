//! `fireweave-ai train-bench`: trained tokens/s and peak RSS of our LoRA step against transformers + peft
//! on the same model, batch, sequence length, LoRA config and thread count. Prints figures; asserts nothing.

use super::lora::{LoraConfig, LoraStore};
use super::model::Llama;
use super::optim::AdamW;
use crate::hf::Checkpoint;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Hugging Face model folder (config.json + safetensors).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub batch: i64,
    #[arg(long, default_value_t = 256)]
    pub seq: i64,
    #[arg(long, default_value_t = 16)]
    pub r: usize,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Skip the transformers + peft side (e.g. without the Python venv).
    #[arg(long)]
    pub ours_only: bool,
}

/// Peak resident set of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(args: &BenchArgs) -> Result<(), super::TrainError> {
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let ck = Checkpoint::open(&args.model)?;
    let model = Llama::load(&ck, Kind::Float, Device::Cpu)?;
    let lora = LoraStore::new(
        &model,
        LoraConfig {
            r: args.r,
            alpha: args.r as f64,
            ..Default::default()
        },
    );
    let params = lora.parameters();
    let mut opt = AdamW::new(&params, 0.01);
    let vocab = model.config.vocab_size as i64;
    let ids = Tensor::randint(vocab, [args.batch, args.seq], (Kind::Int64, Device::Cpu));
    // Every position but the last is trained, as with labels = input_ids in transformers.
    let targets = Tensor::cat(&[ids.narrow(1, 1, args.seq - 1), Tensor::full([args.batch, 1], -100, (Kind::Int64, Device::Cpu))], 1);
    let mut step = |timed: bool| {
        let t = Instant::now();
        let (loss, n) = model.loss_sum(&ids, &targets, Some(&lora), true);
        (loss / n as f64).backward();
        AdamW::clip_grad_norm(&params, 1.0);
        opt.step(&params, 1e-4);
        AdamW::zero_grad(&params);
        if timed { t.elapsed().as_secs_f64() } else { 0.0 }
    };
    step(false);
    let secs: f64 = (0..args.steps).map(|_| step(true)).sum();
    let tokens = (args.batch * args.seq) as f64 * args.steps as f64;
    let ours_tps = tokens / secs;
    let ours_rss = peak_rss_mib();
    println!(
        "model={} batch={} seq={} r={} threads={} steps={}",
        args.model.display(),
        args.batch,
        args.seq,
        args.r,
        args.threads,
        args.steps
    );
    println!("fireweave-ai (tch): {ours_tps:.1} tokens/s, peak RSS {ours_rss:.0} MiB");
    if args.ours_only {
        return Ok(());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_train_hf.py");
    let out = std::process::Command::new("python")
        .arg(script)
        .arg(&args.model)
        .args([args.batch, args.seq, args.r as i64, args.steps as i64, args.threads as i64].map(|v| v.to_string()))
        .output()
        .map_err(|e| super::TrainError::Input(format!("python {script}: {e}")))?;
    if !out.status.success() {
        return Err(super::TrainError::Input(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let theirs: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or("{}"))
        .map_err(|e| super::TrainError::Input(format!("{script}: bad output {line:?}: {e}")))?;
    let their_tps = theirs["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
    let their_rss = theirs["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    println!("transformers+peft: {their_tps:.1} tokens/s, peak RSS {their_rss:.0} MiB");
    println!("speed ratio (ours/theirs): {:.2}x; memory ratio: {:.2}x", ours_tps / their_tps, ours_rss / their_rss);
    Ok(())
}
