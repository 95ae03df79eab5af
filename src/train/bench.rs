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
use super::run::{TrainError, compute_kind, tensors, usable_device};
use crate::api::training_run::LoraSpec;
use crate::chat::{ChatTemplate, Message};
use crate::hf::Checkpoint;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Synthetic,
    Chat,
}

/// Model shapes the bench can fill with random weights (speed does not depend on the values).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomShape {
    /// Llama 3.1 8B: hidden 4096, 32 layers, 32 query / 8 KV heads, vocabulary 128,256; bf16 weights.
    #[value(name = "llama-3.1-8b")]
    Llama31_8b,
    /// The same family at toy size (hidden 256, 2 layers), f32: the GPU path's dress rehearsal on a CPU.
    Tiny,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchDtype {
    F32,
    Bf16,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Hugging Face model folder (config.json + safetensors + tokenizer).
    #[arg(long, required_unless_present = "random", conflicts_with = "random")]
    pub model: Option<PathBuf>,
    /// Instead of --model: random weights of this shape, written once under
    /// $FIREWEAVE_CACHE/bench-models (synthetic workload only: there is no tokenizer).
    #[arg(long, value_enum)]
    pub random: Option<RandomShape>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Base weight and activation dtype (default: f32 on the CPU, bf16 on CUDA, as the trainer picks).
    #[arg(long, value_enum)]
    pub dtype: Option<BenchDtype>,
    /// NF4 base weights (QLoRA), dequantized at each use.
    #[arg(long)]
    pub nf4: bool,
    /// Activation checkpointing (layers recomputed in the backward pass), as the trainer's
    /// `gradientCheckpointing`: what long sequences on an 8B model need to fit.
    #[arg(long)]
    pub recompute: bool,
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
    /// overstated our lead (1.25-1.51x where 16 steps measured 1.01-1.20x on SmolLM2 chat).
    #[arg(long, default_value_t = 16)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Skip the transformers + peft side (it runs only for f32 on the CPU, without --nf4 or --recompute,
    /// in any case).
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
fn batches(args: &BenchArgs, dir: &Path, model: &Llama) -> Result<Vec<Vec<Example>>, TrainError> {
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
            let template = ChatTemplate::from_model_dir(dir)?;
            let tokenizer =
                tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| TrainError::Tokenizer {
                    path: dir.join("tokenizer.json"),
                    message: e.to_string(),
                })?;
            let enc = Encoder {
                template: &template,
                tokenizer: &tokenizer,
                max_len: args.seq,
                system: "",
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
    let device = usable_device(&args.device)?;
    let kind = match args.dtype {
        Some(BenchDtype::F32) => Kind::Float,
        Some(BenchDtype::Bf16) => Kind::BFloat16,
        None => compute_kind(device),
    };
    if device.is_cuda() && !tch::Cuda::is_available() {
        return Err(TrainError::Bench(format!(
            "--device {}: libtorch sees no CUDA device on this machine",
            args.device
        )));
    }
    let model_dir = match (&args.model, args.random) {
        (Some(dir), _) => dir.clone(),
        (None, Some(shape)) => {
            if args.workload == Workload::Chat {
                return Err(TrainError::Bench(
                    "--random has no tokenizer or chat template: use --workload synthetic".into(),
                ));
            }
            random_checkpoint(shape)?
        }
        (None, None) => return Err(TrainError::Bench("give --model DIR or --random SHAPE".into())),
    };
    let gpu_memory = GpuMemory::watch(device);
    let ck = Checkpoint::open(&model_dir)?;
    let model = Llama::load(&ck, kind, device, args.nf4)?;
    drop(ck);
    // Writing a random checkpoint drew from the generator: start the adapters and batches from one state.
    tch::manual_seed(0);
    let spec = LoraSpec {
        r: args.r,
        alpha: args.r,
        ..Default::default()
    };
    let lora = LoraStore::new(&model, &spec);
    let params = lora.parameters();
    let mut opt = AdamW::new(&params, 0.01);
    let batches = batches(args, &model_dir, &model)?;
    let tokens_of = |b: &[Example]| b.iter().map(|e| e.ids.len()).sum::<usize>();
    let trained_of = |b: &[Example]| b.iter().map(Example::trained_tokens).sum::<usize>();
    let tensors = |b: &[Example]| tensors(&b.iter().collect::<Vec<_>>(), device);
    // CUDA runs asynchronously: a step's time ends when the device has finished it.
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    // Seconds spent in the optimizer (clip, AdamW, zeroing) over the timed steps.
    let mut optimizer_secs = 0.0;
    let mut step = |b: &[Example], timed: bool| {
        let (ids, targets) = tensors(b);
        let (t, cpu) = (Instant::now(), process_cpu_seconds());
        let scale = 1.0 / trained_of(b).max(1) as f64;
        model.forward_backward(&ids, &targets, &lora, scale, args.recompute, 0);
        sync();
        let t_opt = Instant::now();
        opt.step_clipped(&params, 1e-4, 1.0);
        sync();
        if timed {
            optimizer_secs += t_opt.elapsed().as_secs_f64();
        }
        (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu)
    };
    step(&batches[0], false);
    let (times, cpu_times): (Vec<f64>, Vec<f64>) = batches[1..].iter().map(|b| step(b, true)).unzip();
    // Read before the ceiling pass runs, so the figure is the training step's alone.
    let ours_rss = peak_rss_mib();
    // The ceiling: the same batches through the frozen base alone (see `Llama::frozen_forward_backward`).
    let ceiling = |b: &[Example]| {
        let (ids, targets) = tensors(b);
        let t = Instant::now();
        model.frozen_forward_backward(&ids, &targets);
        sync();
        t.elapsed().as_secs_f64()
    };
    ceiling(&batches[0]);
    let ceiling_secs: f64 = batches[1..].iter().map(|b| ceiling(b)).sum();
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
        "model={} device={device:?} dtype={kind:?} nf4={} recompute={} workload={:?} batch={} seq={} r={} threads={} timed_steps={} tokens={tokens} padded_tokens={padded} trained_tokens={trained}",
        model_dir.display(),
        args.nf4,
        args.recompute,
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
    let ceiling_tps = tokens as f64 / ceiling_secs;
    println!(
        "fireweave-ai step parts: optimizer (clip + AdamW + zero) {:.1}% of step wall time; frozen base alone (forward, LM head, input-gradient backward above layer 0; no adapters, no optimizer) {ceiling_tps:.1} tokens/s, a ceiling for any LoRA step on these GEMMs; ours is {:.0}% of it",
        100.0 * optimizer_secs / secs,
        100.0 * ours_tps / ceiling_tps
    );
    if let Some(peak) = gpu_memory.and_then(GpuMemory::stop) {
        println!(
            "peak GPU memory {} MiB in use (nvidia-smi, sampled every 100 ms; {} MiB before loading; the caching allocator's reserve included)",
            peak.1, peak.0
        );
    }
    if args.ours_only {
        return Ok(());
    }
    if device != Device::Cpu || kind != Kind::Float || args.nf4 || args.recompute {
        println!("transformers+peft: not run (its side runs f32 weights on the CPU without checkpointing)");
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
        .arg(&model_dir)
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
        ceiling_tps / their_tps
    );
    Ok(())
}

/// Folder name, weight dtype and config.json of a random shape.
fn random_config(shape: RandomShape) -> (&'static str, Kind, serde_json::Value) {
    // hidden, intermediate, layers, query heads, KV heads.
    let (name, kind, dtype, [hidden, inter, layers, heads, kv]) = match shape {
        RandomShape::Llama31_8b => (
            "llama-3.1-8b-random",
            Kind::BFloat16,
            "bfloat16",
            [4096, 14336, 32, 32, 8],
        ),
        RandomShape::Tiny => ("tiny-llama31-random", Kind::Float, "float32", [256, 768, 2, 4, 4]),
    };
    let mut config = serde_json::json!({
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hidden / heads,
        "torch_dtype": dtype,
    });
    // What the two shapes share with Llama 3.1's own config.json.
    for (k, v) in [
        ("architectures", serde_json::json!(["LlamaForCausalLM"])),
        ("model_type", serde_json::json!("llama")),
        ("rms_norm_eps", serde_json::json!(1e-5)),
        ("rope_theta", serde_json::json!(500000.0)),
        (
            "rope_scaling",
            serde_json::json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
        ),
        ("max_position_embeddings", serde_json::json!(131072)),
        ("vocab_size", serde_json::json!(128256)),
        ("tie_word_embeddings", serde_json::json!(false)),
        ("bos_token_id", serde_json::json!(128000)),
        ("eos_token_id", serde_json::json!([128001, 128008, 128009])),
    ] {
        config[k] = v;
    }
    (name, kind, config)
}

/// A Hugging Face checkpoint of `shape` with random weights (normal, σ 0.02; norms 1), written once to
/// $FIREWEAVE_CACHE/bench-models/NAME through a temporary folder renamed into place, so a folder that
/// exists is complete. Shards of about 2 GiB, named and indexed as transformers writes them, so the
/// transformers + peft side loads the same folder.
fn random_checkpoint(shape: RandomShape) -> Result<PathBuf, TrainError> {
    let (name, kind, config) = random_config(shape);
    let cache = std::env::var_os("FIREWEAVE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fireweave-ai")))
        .ok_or_else(|| TrainError::Bench("neither FIREWEAVE_CACHE nor HOME is set".into()))?;
    write_random(&cache.join("bench-models"), name, kind, &config, 2 << 30)
}

/// Writes the random checkpoint `name` with `config` under `root` unless it is there; shards close once
/// they hold `shard_limit` bytes.
fn write_random(
    root: &Path,
    name: &str,
    kind: Kind,
    config: &serde_json::Value,
    shard_limit: usize,
) -> Result<PathBuf, TrainError> {
    let dest = root.join(name);
    if dest.join("config.json").exists() {
        return Ok(dest);
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| TrainError::Bench(format!("{}: {e}", path.display()));
    let tmp = root.join(format!(".{name}.partial-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, &e))?;
    let text = serde_json::to_vec_pretty(config).expect("json");
    let parsed = crate::hf::LlamaConfig::from_json(&text).map_err(|e| TrainError::Bench(e.to_string()))?;
    std::fs::write(tmp.join("config.json"), &text).map_err(|e| io(&tmp, &e))?;
    eprintln!("[train-bench] writing random {name} weights to {}", dest.display());
    tch::manual_seed(0);
    // Shards are numbered as written and renamed once their count is known, to the names transformers
    // looks for: model.safetensors alone, or model-0000i-of-0000N.safetensors with an index.
    let (mut shard, mut shard_bytes, mut files) = (Vec::<(String, Tensor)>::new(), 0usize, Vec::<Vec<String>>::new());
    let flush = |shard: &mut Vec<(String, Tensor)>, files: &mut Vec<Vec<String>>| -> Result<(), TrainError> {
        if shard.is_empty() {
            return Ok(());
        }
        let path = tmp.join(format!("part-{}", files.len()));
        Tensor::write_safetensors(shard.as_slice(), &path).map_err(|e| io(&path, &e))?;
        files.push(shard.drain(..).map(|(name, _)| name).collect());
        Ok(())
    };
    let mut total_size = 0usize;
    for (tensor, dims) in parsed.expected_shapes() {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let t = if dims.len() == 1 {
            Tensor::ones(dims.as_slice(), (kind, Device::Cpu))
        } else {
            (Tensor::randn(dims.as_slice(), (Kind::Float, Device::Cpu)) * 0.02).to_kind(kind)
        };
        let bytes = t.numel() * kind.elt_size_in_bytes();
        shard_bytes += bytes;
        total_size += bytes;
        shard.push((tensor, t));
        if shard_bytes >= shard_limit {
            flush(&mut shard, &mut files)?;
            shard_bytes = 0;
        }
    }
    flush(&mut shard, &mut files)?;
    let n = files.len();
    let mut weight_map = serde_json::Map::new();
    for (i, names) in files.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        };
        let from = tmp.join(format!("part-{i}"));
        std::fs::rename(&from, tmp.join(&file)).map_err(|e| io(&from, &e))?;
        for name in names {
            weight_map.insert(name.clone(), serde_json::json!(file));
        }
    }
    if n > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
        let path = tmp.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).expect("json")).map_err(|e| io(&path, &e))?;
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another bench wrote it meanwhile: theirs is complete too.
        Err(_) if dest.join("config.json").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(io(&dest, &e)),
    }
}

/// Peak memory in use on a CUDA device, sampled with nvidia-smi on a background thread (libtorch's own
/// allocator statistics are not reachable through tch). `None` on the CPU or without nvidia-smi.
struct GpuMemory {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Option<(u64, u64)>>,
}

impl GpuMemory {
    fn watch(device: Device) -> Option<Self> {
        let Device::Cuda(index) = device else { return None };
        let read = move || -> Option<u64> {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i"])
                .arg(index.to_string())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        let before = read()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut peak = before;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(read().unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Some((before, peak))
        });
        Some(GpuMemory { stop, handle })
    }

    /// (MiB before loading, peak MiB).
    fn stop(self) -> Option<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
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
    /// The 8B shape is Llama 3.1 8B's: 8,030,261,248 parameters, as its model card counts them.
    #[test]
    fn random_shapes_parse_as_llama_31() {
        for shape in [super::RandomShape::Llama31_8b, super::RandomShape::Tiny] {
            let (_, _, config) = super::random_config(shape);
            let parsed = crate::hf::LlamaConfig::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
            assert!(parsed.rope_scaling.is_some(), "{shape:?}");
            let params: usize = parsed
                .expected_shapes()
                .iter()
                .map(|(_, d)| d.iter().product::<usize>())
                .sum();
            if shape == super::RandomShape::Llama31_8b {
                assert_eq!(params, 8_030_261_248);
                assert_eq!(parsed.head_dim, 128);
            }
        }
    }

    /// Small shards force the multi-file layout the 8B checkpoint gets: every tensor in the index points
    /// at a file that exists, and the folder opens as a checkpoint of the configured shapes.
    #[test]
    fn random_checkpoint_shards_and_indexes_like_transformers() {
        let root = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
            "num_key_value_heads": 1, "vocab_size": 1000, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
        });
        let dir = super::write_random(root.path(), "m", tch::Kind::Float, &config, 200_000).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
        let map = index["weight_map"].as_object().unwrap();
        let ck = crate::hf::Checkpoint::open(&dir).unwrap();
        ck.validate_shapes().unwrap();
        assert_eq!(map.len(), ck.names().count());
        let files: std::collections::BTreeSet<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
        assert!(files.len() > 2, "{files:?}");
        for f in &files {
            assert!(f.ends_with(&format!("-of-{:05}.safetensors", files.len())), "{f}");
            assert!(dir.join(f).exists(), "{f}");
        }
        // Reused as is: a second call writes nothing.
        let before = std::fs::metadata(dir.join("config.json")).unwrap().modified().unwrap();
        super::write_random(root.path(), "m", tch::Kind::Float, &config, 200_000).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("config.json")).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            1,
            "a partial folder was left"
        );
    }

    #[test]
    fn chat_workload_has_a_trained_answer_each() {
        let convs = super::chat_conversations();
        assert_eq!(convs.len(), 32);
        assert!(convs.iter().all(|c| c.messages.len() == 3));
    }
}
