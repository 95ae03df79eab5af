//! `fireweave-ai train-bench`: trained tokens/s and peak RSS of our LoRA training step against
//! transformers + peft on the same model, batches, LoRA config and thread count. Prints figures; asserts
//! nothing.
//!
//! Two workloads: `synthetic` (random token ids, every position trained, the batch full: what a
//! throughput-only benchmark usually measures) and `chat` (FireWeave Q&A conversations rendered with the
//! model's chat template, loss on assistant tokens only, batches padded to their longest member: what a
//! fine-tune actually runs). Both sides get the very same batches. "Tokens" are the non-padding input
//! tokens of a step.
//!
//! Beside the two sides it prints a ceiling: the same batches through the frozen base alone (forward, LM
//! head, input-gradient backward above layer 0; no adapters, no optimizer). Every LoRA step runs at least
//! those GEMMs, so that rate bounds what any LoRA step on this machine's BLAS can reach, and the
//! ceiling-to-theirs ratio bounds the speed-up over transformers + peft.

use super::data::{self, Conversation, Encoder, Example};
use super::lora::LoraStore;
use super::model::Llama;
use super::optim::AdamW;
use super::run::TrainError;
use crate::api::training_run::LoraSpec;
use crate::chat::{ChatTemplate, Message};
use crate::hf::Checkpoint;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Synthetic,
    Chat,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Hugging Face model folder (config.json + safetensors + tokenizer).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "synthetic")]
    pub workload: Workload,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Sequence length (synthetic) or maximum sequence length (chat).
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 16)]
    pub r: u32,
    /// Timed steps (after one untimed warm-up step). 16 is every batch of the chat workload once at batch
    /// 2; transformers' first steps after the warm-up run slower than its later ones, so five-step runs
    /// overstated our lead (1.25-1.51x where 16 steps measured 1.01-1.18x on SmolLM2 chat).
    #[arg(long, default_value_t = 16)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Skip the transformers + peft side.
    #[arg(long)]
    pub ours_only: bool,
    /// Python with torch, transformers and peft (default: $FIREWEAVE_VENV/bin/python, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
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

/// CPU time of this process, all threads, in seconds (utime + stime from /proc/self/stat, in clock ticks
/// of 1/100 s): the step's compute without the time other processes on a shared machine took from it.
fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesized command name: state is field 3, utime 14 and stime 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(f64::NAN, |ticks| ticks / 100.0)
}

/// The chat workload's conversations: the seed's system prompt, a FireWeave question, a multi-sentence answer.
fn chat_conversations() -> Vec<Conversation> {
    const SYSTEM: &str =
        "You are a Network Security Expert integrated with FireWeave. Provide accurate, detailed technical guidance.";
    let topics = [
        (
            "check whether 10.1.4.20 can reach 10.2.8.9 on TCP 443",
            "run check_traffic_flow",
        ),
        (
            "find shadowed rules on the Palo Alto edge firewall",
            "open the policy analysis view",
        ),
        (
            "prepare a PCI-DSS compliance scan",
            "call run_compliance_scan with framework PCI-DSS",
        ),
        (
            "bulk import rules from a spreadsheet",
            "upload the CSV in the bulk import wizard",
        ),
        ("roll back a rule change", "restore the previous policy version"),
        (
            "connect FireWeave to ServiceNow",
            "add the ServiceNow integration with an API user",
        ),
        (
            "clean up duplicate address objects",
            "run the object deduplication report",
        ),
        (
            "fix a topology collection that times out",
            "check the collector's credentials and reachability",
        ),
    ];
    (0..32)
        .map(|i| {
            let (task, how) = topics[i % topics.len()];
            let detail = "FireWeave traces the path through every firewall, NAT and route table, shows the matching rule on each hop, and records the result so the change request can reference it. ";
            Conversation {
                messages: vec![
                    Message::system(SYSTEM),
                    Message::user(format!("How do I {task} in FireWeave? (case {i})")),
                    Message::assistant(format!("To {task}, {how}. {}", detail.repeat(1 + i % 4))),
                ],
                tools: Vec::new(),
            }
        })
        .collect()
}

/// The batches both sides train on: [batch] examples each (ids and unshifted labels, −100 = no loss).
fn batches(args: &BenchArgs, model: &Llama) -> Result<Vec<Vec<Example>>, TrainError> {
    let n = args.steps + 1;
    match args.workload {
        Workload::Synthetic => {
            let vocab = model.config.vocab_size as i64;
            let ids = Tensor::randint(
                vocab,
                [(n * args.batch) as i64, args.seq as i64],
                (Kind::Int64, Device::Cpu),
            );
            let rows: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(ids).map_err(|e| TrainError::Bench(e.to_string()))?;
            Ok(rows
                .chunks(args.batch)
                .map(|c| {
                    c.iter()
                        .map(|ids| Example::from_labels(ids.clone(), ids.clone()))
                        .collect()
                })
                .collect())
        }
        Workload::Chat => {
            let template = ChatTemplate::from_model_dir(&args.model)?;
            let tokenizer = tokenizers::Tokenizer::from_file(args.model.join("tokenizer.json")).map_err(|e| {
                TrainError::Tokenizer {
                    path: args.model.join("tokenizer.json"),
                    message: e.to_string(),
                }
            })?;
            let enc = Encoder {
                template: &template,
                tokenizer: &tokenizer,
                max_len: args.seq,
            };
            let (examples, _) = enc.encode_all(&chat_conversations())?;
            let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
            // The trainer's own bucketing picks the batches.
            let order = data::epoch_batches(&lengths, args.batch, 3407, 0);
            Ok(order
                .iter()
                .cycle()
                .take(n)
                .map(|b| b.iter().map(|&i| examples[i].clone()).collect())
                .collect())
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<(), TrainError> {
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let ck = Checkpoint::open(&args.model)?;
    let model = Llama::load(&ck, Kind::Float, Device::Cpu, false)?;
    let spec = LoraSpec {
        r: args.r,
        alpha: args.r,
        ..Default::default()
    };
    let lora = LoraStore::new(&model, &spec);
    let params = lora.parameters();
    let mut opt = AdamW::new(&params, 0.01);
    let batches = batches(args, &model)?;
    let tokens_of = |b: &[Example]| b.iter().map(|e| e.ids.len()).sum::<usize>();
    let trained_of = |b: &[Example]| b.iter().map(Example::trained_tokens).sum::<usize>();
    let tensors = |b: &[Example]| {
        let refs: Vec<&Example> = b.iter().collect();
        let (ids, targets, bs, s) = data::collate(&refs);
        (
            Tensor::from_slice(&ids).view([bs, s]),
            Tensor::from_slice(&targets).view([bs, s]),
        )
    };
    // Seconds spent in the optimizer (clip, AdamW, zeroing) over the timed steps.
    let mut optimizer_secs = 0.0;
    let mut step = |b: &[Example], timed: bool| {
        let (ids, targets) = tensors(b);
        let (t, cpu) = (Instant::now(), process_cpu_seconds());
        let scale = 1.0 / trained_of(b).max(1) as f64;
        model.forward_backward(&ids, &targets, &lora, scale, false, 0);
        let t_opt = Instant::now();
        opt.step_clipped(&params, 1e-4, 1.0);
        if timed {
            optimizer_secs += t_opt.elapsed().as_secs_f64();
        }
        (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu)
    };
    step(&batches[0], false);
    let (times, cpu_times): (Vec<f64>, Vec<f64>) = batches[1..].iter().map(|b| step(b, true)).unzip();
    // Read before the floor pass runs, so the figure is the training step's alone.
    let ours_rss = peak_rss_mib();
    // The ceiling: the same batches through the frozen base alone (see `Llama::frozen_forward_backward`).
    let floor = |b: &[Example]| {
        let (ids, targets) = tensors(b);
        let t = Instant::now();
        model.frozen_forward_backward(&ids, &targets);
        t.elapsed().as_secs_f64()
    };
    floor(&batches[0]);
    let floor_secs: f64 = batches[1..].iter().map(|b| floor(b)).sum();
    let secs: f64 = times.iter().sum();
    let cpu_secs: f64 = cpu_times.iter().sum();
    let tokens: usize = batches[1..].iter().map(|b| tokens_of(b)).sum();
    let trained: usize = batches[1..].iter().map(|b| trained_of(b)).sum();
    let padded: usize = batches[1..]
        .iter()
        .map(|b| b.len() * b.iter().map(|e| e.ids.len()).max().unwrap_or(0))
        .sum();
    let ours_tps = tokens as f64 / secs;
    println!(
        "model={} workload={:?} batch={} seq={} r={} threads={} timed_steps={} tokens={tokens} padded_tokens={padded} trained_tokens={trained}",
        args.model.display(),
        args.workload,
        args.batch,
        args.seq,
        args.r,
        args.threads,
        args.steps
    );
    println!(
        "fireweave-ai (tch): {ours_tps:.1} tokens/s wall, {:.1} tokens per CPU second; step wall s (sorted) {}; peak RSS {ours_rss:.0} MiB",
        tokens as f64 / cpu_secs,
        sorted_secs(&times)
    );
    let floor_tps = tokens as f64 / floor_secs;
    println!(
        "fireweave-ai step parts: optimizer (clip + AdamW + zero) {:.1}% of step wall time; frozen base alone (forward, LM head, input-gradient backward above layer 0; no adapters, no optimizer) {floor_tps:.1} tokens/s, a ceiling for any LoRA step on these GEMMs; ours is {:.0}% of it",
        100.0 * optimizer_secs / secs,
        100.0 * ours_tps / floor_tps
    );
    if args.ours_only {
        return Ok(());
    }

    let dir = tempfile_dir()?;
    let batches_path = dir.join("batches.json");
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
    std::fs::write(&batches_path, serde_json::to_vec(&json).expect("json"))
        .map_err(|e| TrainError::Bench(e.to_string()))?;
    let python = args.python.clone().unwrap_or_else(|| {
        std::env::var_os("FIREWEAVE_VENV")
            .map(|v| PathBuf::from(v).join("bin/python"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"))
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_train_hf.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&args.model)
        .arg(&batches_path)
        .args([args.r.to_string(), args.threads.to_string()])
        .output()
        .map_err(|e| TrainError::Bench(format!("{}: {e}", python.display())))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(TrainError::Bench(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let theirs: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("{}"))
        .map_err(|e| TrainError::Bench(format!("{script}: bad output {stdout:?}: {e}")))?;
    let their_times: Vec<f64> = theirs["step_seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    let their_cpu: f64 = theirs["step_cpu_seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).sum())
        .unwrap_or(f64::NAN);
    let their_tps = tokens as f64 / their_times.iter().sum::<f64>();
    let their_rss = theirs["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    println!(
        "transformers+peft: {their_tps:.1} tokens/s wall, {:.1} tokens per CPU second; step wall s (sorted) {}; peak RSS {their_rss:.0} MiB",
        tokens as f64 / their_cpu,
        sorted_secs(&their_times)
    );
    println!(
        "ours/theirs: {:.2}x tokens/s (wall), {:.2}x tokens per CPU second, {:.2}x peak RSS; frozen-base ceiling/theirs {:.2}x",
        ours_tps / their_tps,
        their_cpu / cpu_secs,
        ours_rss / their_rss,
        floor_tps / their_tps
    );
    Ok(())
}

/// Step times in ascending order: on a shared machine the fastest steps show what each side can do.
fn sorted_secs(times: &[f64]) -> String {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" ")
}

fn tempfile_dir() -> Result<PathBuf, TrainError> {
    let dir = std::env::temp_dir().join(format!("fireweave-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::Bench(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chat_workload_has_a_trained_answer_each() {
        let convs = super::chat_conversations();
        assert_eq!(convs.len(), 32);
        assert!(convs.iter().all(|c| c.messages.len() == 3));
    }
}
