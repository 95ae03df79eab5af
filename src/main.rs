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
    /// Serve GGUF models on the Ollama REST API (plus /metrics, /healthz, /readyz) with llama.cpp.
    #[cfg(feature = "serve")]
    Serve(fireweave_ai::serve::ServeArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    fireweave_ai::telemetry::init(cli.log_json);
    match cli.command {
        Command::Doctor => fireweave_ai::doctor::run(),
        #[cfg(feature = "serve")]
        Command::Serve(args) => Ok(fireweave_ai::serve::run(args)?),
    }
}
