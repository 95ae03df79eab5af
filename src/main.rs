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
    /// Report what this build can do here: features, libtorch and CUDA, llama.cpp backends.
    Doctor,
    /// Fine-tune a Llama-family model with LoRA from a TrainingRun (the train worker).
    #[cfg(feature = "train")]
    Train(fireweave_ai::train::TrainArgs),
    /// Benchmark a LoRA training step against transformers + peft on CPU (prints figures).
    #[cfg(feature = "train")]
    TrainBench(fireweave_ai::train::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    fireweave_ai::telemetry::init(cli.log_json);
    match cli.command {
        Command::Doctor => fireweave_ai::doctor::run(),
        #[cfg(feature = "train")]
        Command::Train(args) => Ok(fireweave_ai::train::main(&args)?),
        #[cfg(feature = "train")]
        Command::TrainBench(args) => Ok(fireweave_ai::train::bench::run(&args)?),
    }
}
