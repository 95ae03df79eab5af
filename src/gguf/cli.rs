//! `fireweave-ai quantize` and `fireweave-ai gguf inspect`.

use super::convert::{OutputSummary, Request, convert, elapsed_s, total_values};
use super::{GgufError, MappedGguf, Mix};
use crate::api::training_run::GgufArtifact;
use crate::api::{Quantization, TrainingRun};
use crate::contract::document::namespace_of;
use crate::contract::layout::{self, RunPart};
use crate::contract::{Digest, QuantizeResult};
use crate::hf::Checkpoint;
use kube::ResourceExt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long, required_unless_present = "spec")]
    pub model: Option<PathBuf>,
    /// Output types; repeat for several files from one pass: F32, F16, BF16, Q8_0, Q4_K_M, Q5_K_M.
    #[arg(long = "type", short = 't', value_parser = parse_mix)]
    pub types: Vec<Mix>,
    /// Folder for the outputs, named <name>-<TYPE>.gguf.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Model name for general.name and file names (default: the checkpoint folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// A TrainingRun CR (spec.json as the operator renders it): reads runs/<ns>/<name>/merged and
    /// writes runs/<ns>/<name>/gguf/<name>-<QUANT>.gguf under --artifacts, types from spec.export.gguf.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    /// With --spec: where Kubernetes reads the result (or the reason it failed); written when the file exists.
    #[arg(long, default_value = crate::contract::report::TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print a JSON summary (files, types, sizes, digests, seconds) as the last line.
    #[arg(long)]
    pub json: bool,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    Mix::parse(s).ok_or_else(|| {
        format!(
            "unknown type {s:?}; expected one of {}",
            Mix::ALL.map(|m| m.name()).join(", ")
        )
    })
}

#[derive(clap::Args, Debug)]
pub struct GgufArgs {
    #[command(subcommand)]
    pub command: GgufCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum GgufCommand {
    /// Show a GGUF file's metadata, tensor table and type histogram.
    Inspect {
        file: PathBuf,
        /// List every tensor (default: the first 20 and a count).
        #[arg(long)]
        all: bool,
    },
    /// Kernel throughput (one thread) against llama.cpp's reference quantizer, with a byte comparison.
    Bench {
        /// Values per kernel run.
        #[arg(long, default_value_t = 1 << 22)]
        values: usize,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

struct Job {
    model: PathBuf,
    name: String,
    out_dir: PathBuf,
    types: Vec<Mix>,
}

/// The quantize step of a TrainingRun: the GGUF files named in `spec.export.gguf`, made from the run's merged
/// checkpoint, with URIs relative to the artifact root as the operator expects them. The library entry point
/// the quantize step and `fireweave-ai run` call.
pub fn quantize_training_run(tr: &TrainingRun, artifacts: &Path) -> Result<QuantizeResult, GgufError> {
    let (ns, name) = (namespace_of(tr), tr.name_any());
    let types = tr
        .spec
        .export
        .gguf
        .iter()
        .map(|q| {
            Mix::parse(q.as_str()).ok_or_else(|| GgufError::Spec {
                path: PathBuf::from("spec.export.gguf"),
                message: format!("{q} has no GGUF writer"),
            })
        })
        .collect::<Result<_, _>>()?;
    let job = Job {
        model: artifacts.join(layout::run_part(&ns, &name, RunPart::Merged)),
        name: name.clone(),
        out_dir: artifacts.join(layout::run_part(&ns, &name, RunPart::Gguf)),
        types,
    };
    if crate::contract::report::fault_injected("quantize") {
        // As a truncated or missing merged checkpoint would fail: while opening the input.
        let missing = job.model.join("injected-fault");
        Checkpoint::open(&missing)?;
    }
    let (summaries, _) = run_job(&job)?;
    let gguf = summaries
        .iter()
        .map(|s| {
            let file = s
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let quantization = Quantization::ALL
                .into_iter()
                .find(|q| q.as_str() == s.quantization)
                .ok_or_else(|| GgufError::Spec {
                    path: PathBuf::from("spec.export.gguf"),
                    message: format!("{} is not a quantization a ModelServing can serve", s.quantization),
                })?;
            let digest = Digest::parse(&s.sha256).map_err(|e| GgufError::Spec {
                path: s.path.clone(),
                message: e.to_string(),
            })?;
            Ok(GgufArtifact {
                quantization,
                uri: layout::run_part(&ns, &name, RunPart::Gguf)
                    .join(file)
                    .to_string_lossy()
                    .into_owned(),
                digest,
                size_bytes: s.size_bytes,
            })
        })
        .collect::<Result<_, GgufError>>()?;
    Ok(QuantizeResult { gguf })
}

/// The quantize step as a Job runs it, or a plain conversion (`--model`).
pub fn quantize(args: QuantizeArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    if let Some(spec) = &args.spec {
        crate::contract::run_step("quantize", &args.termination_log, || {
            let tr: TrainingRun = crate::contract::document::load(spec).map_err(|e| e.to_string())?;
            quantize_training_run(&tr, &args.artifacts).map_err(|e| e.to_string())
        })?;
        return Ok(());
    }
    let model = args
        .model
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--model is required without --spec"))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => model
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into()),
    };
    if args.types.is_empty() {
        anyhow::bail!("give at least one --type (F32, F16, BF16, Q8_0, Q4_K_M, Q5_K_M)");
    }
    let job = Job {
        model,
        name,
        out_dir: args.out_dir.clone(),
        types: args.types.clone(),
    };
    let (summaries, seconds) = run_job(&job)?;
    for s in &summaries {
        println!(
            "{}  {}  ({} bytes, {})",
            s.sha256,
            s.path.display(),
            s.size_bytes,
            s.quantization
        );
    }
    if args.json {
        println!("{}", serde_json::json!({ "files": summaries, "seconds": seconds }));
    }
    Ok(())
}

/// Converts once, writing every requested type; returns the outputs and the seconds it took.
fn run_job(job: &Job) -> Result<(Vec<OutputSummary>, f64), GgufError> {
    let mut types = job.types.clone();
    types.dedup();
    std::fs::create_dir_all(&job.out_dir).map_err(|source| GgufError::Io {
        path: job.out_dir.clone(),
        source,
    })?;
    let start = Instant::now();
    let ckpt = Checkpoint::open(&job.model)?;
    let requests: Vec<Request> = types
        .iter()
        .map(|&mix| Request {
            mix,
            path: job.out_dir.join(layout::gguf_file_name(&job.name, mix.name())),
        })
        .collect();
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| crate::telemetry::bar(total_values(&ckpt), "quantize"));
    let summaries = convert(&ckpt, &job.name, &requests, &|n| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for s in &summaries {
        tracing::info!(file = %s.path.display(), sha256 = %s.sha256, bytes = s.size_bytes, quantization = %s.quantization, "wrote GGUF");
    }
    Ok((summaries, elapsed_s(start)))
}

pub fn gguf(args: GgufArgs) -> anyhow::Result<()> {
    match args.command {
        GgufCommand::Inspect { file, all } => {
            let mapped = MappedGguf::open(&file)?;
            let g = mapped.parse()?;
            print!("{}", render_inspect(&g, all));
            Ok(())
        }
        GgufCommand::Bench { values, reps } => {
            print!("{}", super::bench::run(values, reps));
            Ok(())
        }
    }
}

/// The inspect report as text (pure, so it is testable).
pub fn render_inspect(g: &super::Gguf<'_>, all: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "GGUF v{}  {} metadata keys, {} tensors, alignment {}",
        g.version,
        g.metadata.len(),
        g.tensors.len(),
        g.alignment
    );
    let _ = writeln!(s, "\nmetadata:");
    for (k, v) in &g.metadata {
        let _ = writeln!(s, "  {k:<44} {}", v.summary());
    }
    let _ = writeln!(s, "\ntensors:");
    let shown = if all { g.tensors.len() } else { g.tensors.len().min(20) };
    for t in &g.tensors[..shown] {
        let _ = writeln!(
            s,
            "  {:<36} {:<5} {:?}  {} bytes @ {}",
            t.name,
            t.ggml_type.name(),
            t.dims,
            t.n_bytes(),
            t.offset
        );
    }
    if shown < g.tensors.len() {
        let _ = writeln!(s, "  … {} more (--all lists them)", g.tensors.len() - shown);
    }
    let mut hist: std::collections::BTreeMap<&str, (usize, u64, u64)> = Default::default();
    for t in &g.tensors {
        let e = hist.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.n_bytes();
    }
    let _ = writeln!(s, "\ntypes:");
    for (name, (count, values, bytes)) in hist {
        let _ = writeln!(
            s,
            "  {name:<5} {count:>5} tensors {values:>14} values {bytes:>14} bytes"
        );
    }
    s
}
