//! `fireweave-ai`: one binary for every role — the operator, its worker steps, and the local pipeline.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fireweave-ai", version, about, propagate_version = true)]
struct Cli {
    /// Log as JSON lines (what the operator and cluster workers use) instead of human-readable text.
    #[arg(long, global = true, env = "FIREWEAVE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Dataset / TrainingRun / ModelServing YAML on this machine: build, fine-tune, quantize, serve.
    #[cfg(all(feature = "train", feature = "serve"))]
    Run(fireweave_ai::local::RunArgs),
    /// Report what this build can do here: features, libtorch and CUDA, llama.cpp backends.
    Doctor,
    /// Build a training dataset: load, validate, score, deduplicate, split (and optionally synthesize).
    Dataset(fireweave_ai::dataset::Args),
    /// Convert a Hugging Face checkpoint to GGUF files (F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M) in one pass.
    Quantize(fireweave_ai::gguf::cli::QuantizeArgs),
    /// Inspect GGUF files.
    Gguf(fireweave_ai::gguf::cli::GgufArgs),
    /// Serve GGUF models on the Ollama REST API (plus /metrics, /healthz, /readyz) with llama.cpp.
    #[cfg(feature = "serve")]
    Serve(fireweave_ai::serve::ServeArgs),
    /// Write the CustomResourceDefinitions (Dataset, TrainingRun, ModelServing) as YAML into a folder.
    Crdgen(fireweave_ai::api::crdgen::Args),
    /// Run the Kubernetes operator (controllers, /metrics, /healthz, /readyz).
    Operator(Box<fireweave_ai::controller::config::Args>),
    /// Fine-tune a Llama-family model with LoRA/QLoRA from a TrainingRun (the train worker).
    #[cfg(feature = "train")]
    Train(Box<fireweave_ai::train::TrainArgs>),
    /// Measure the base model, the adapter and every GGUF on the eval split and judge them against the gate.
    #[cfg(all(feature = "train", feature = "serve"))]
    Evaluate(Box<fireweave_ai::eval::EvaluateArgs>),
    /// Benchmark LoRA training steps against transformers + peft on the CPU (prints figures).
    #[cfg(feature = "train")]
    TrainBench(fireweave_ai::train::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    fireweave_ai::telemetry::init(cli.log_json);
    match cli.command {
        #[cfg(all(feature = "train", feature = "serve"))]
        Command::Run(args) => {
            fireweave_ai::local::run(args)?;
            Ok(())
        }
        Command::Doctor => fireweave_ai::doctor::run(),
        Command::Dataset(args) => {
            fireweave_ai::dataset::main(args)?;
            Ok(())
        }
        Command::Quantize(args) => fireweave_ai::gguf::cli::quantize(args),
        Command::Gguf(args) => fireweave_ai::gguf::cli::gguf(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => Ok(fireweave_ai::serve::run(args)?),
        Command::Crdgen(args) => Ok(fireweave_ai::api::crdgen::run(&args)?),
        Command::Operator(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            Ok(runtime.block_on(fireweave_ai::controller::operator::run(*args))?)
        }
        #[cfg(feature = "train")]
        Command::Train(args) => Ok(fireweave_ai::train::main(&args)?),
        #[cfg(all(feature = "train", feature = "serve"))]
        Command::Evaluate(args) => Ok(fireweave_ai::eval::main(&args)?),
        #[cfg(feature = "train")]
        Command::TrainBench(args) => Ok(fireweave_ai::train::bench::run(&args)?),
    }
}
