//! `fireweave-ai serve`: the built-in Ollama-compatible server over llama.cpp, with what Ollama lacks —
//! Prometheus `/metrics`, a `/readyz` that means "the model answered", a bounded queue that says 503 when
//! full, and several requests decoded together in one llama.cpp batch.

pub mod api;
pub mod config;
mod engine;
mod metrics;
pub(crate) mod model;
pub mod options;
mod routes;
pub mod text;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use engine::{EngineParams, FlashAttention};

/// Context length of each sequence when neither `--num-ctx` nor the model's parameters set one (also the
/// ModelServing CRD's default `num_ctx`).
const DEFAULT_NUM_CTX: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Load(#[from] model::LoadError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Http(#[source] std::io::Error),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A model to serve: NAME=PATH.gguf, optionally @SHA256 (checked before loading). Repeatable.
    #[arg(long = "model", value_name = "NAME=PATH[@SHA256]")]
    pub models: Vec<String>,
    /// YAML file: `models: [{name, path, sha256, system, template, parameters}]`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A ModelServing resource (YAML or the operator's spec.json) whose `spec.model.gguf` is served.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where relative paths in --spec resolve.
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    #[arg(long, default_value = "127.0.0.1:11434", env = "FIREWEAVE_SERVE_ADDR")]
    pub addr: SocketAddr,
    /// Requests decoded together per model (llama.cpp sequences in one batch).
    #[arg(long, default_value_t = 4, env = "FIREWEAVE_SERVE_PARALLEL")]
    pub parallel: u32,
    /// Requests that may wait for a slot; more get 503 (Ollama's OLLAMA_MAX_QUEUE default).
    #[arg(long, default_value_t = 512, env = "FIREWEAVE_SERVE_MAX_QUEUE")]
    pub max_queue: usize,
    /// Context length of each sequence [default: the model's `num_ctx` parameter (ModelServing spec or config
    /// file), else 4096].
    #[arg(long)]
    pub num_ctx: Option<u32>,
    /// CPU threads for llama.cpp (default: all cores).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Tokens per llama.cpp decode call (prompt chunks and generating sequences share it).
    #[arg(long, default_value_t = 512)]
    pub batch: u32,
    /// A request still running after this many seconds is ended with an error and its slot freed.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// llama.cpp flash attention: auto, on or off.
    #[arg(long, value_enum, default_value_t = FlashAttention::Auto)]
    pub flash_attention: FlashAttention,
}

impl ServeArgs {
    /// The server for one ModelServing document, every other setting at the command line's defaults (clap
    /// holds them, so they are stated once).
    pub fn for_spec(spec: PathBuf, artifacts: PathBuf, addr: SocketAddr, threads: Option<i32>) -> Self {
        use clap::{Args as _, FromArgMatches as _};
        let command = ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true));
        let matches = command.get_matches_from(Vec::<String>::new());
        let mut args = ServeArgs::from_arg_matches(&matches).expect("every serve flag has a default");
        args.spec = Some(spec);
        args.artifacts = artifacts;
        args.addr = addr;
        args.threads = threads;
        args
    }
}

/// Loads every model, serves until SIGINT/SIGTERM, then lets in-flight requests finish before returning.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let mut from_file = match &args.config {
        Some(p) => config::load_config_file(p)?,
        None => Vec::new(),
    };
    if let Some(spec) = &args.spec {
        from_file.push(config::load_spec(spec, &args.artifacts)?);
    }
    let from_cli = args
        .models
        .iter()
        .map(|m| config::parse_model_arg(m))
        .collect::<Result<Vec<_>, _>>()?;
    let models = config::merge_models(from_file, from_cli)?;
    let params = EngineParams {
        parallel: args.parallel.max(1),
        num_ctx: DEFAULT_NUM_CTX,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i32)),
        batch: args.batch.max(1),
        timeout: Duration::from_secs(args.timeout_secs),
        flash_attention: args.flash_attention,
    };
    let metrics = metrics::Metrics::new()?;
    let runtime = tokio::runtime::Runtime::new().map_err(ServeError::Http)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: args.addr,
                source,
            })?;
        let mut served = Vec::new();
        let mut threads = Vec::new();
        for m in models {
            // The KV cache is sized per model: the flag wins, else the model's own num_ctx (what a ModelServing's
            // Modelfile asks for), so a spec asking for 8,192 tokens is not served with 4,096.
            let params = EngineParams {
                num_ctx: args.num_ctx.or(m.parameters.num_ctx).unwrap_or(DEFAULT_NUM_CTX).max(16),
                ..params.clone()
            };
            let (model, thread) = model::load(m, params, args.max_queue, metrics.clone())?;
            served.push(model);
            threads.push(thread);
        }
        let state = routes::AppState {
            models: Arc::new(served),
            metrics,
        };
        tracing::info!(addr = %args.addr, "serving the Ollama API");
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(ServeError::Http)?;
        // The router and its model handles are gone: the schedulers see their queues close, finish what they
        // hold and exit.
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .ok();
        tracing::info!("server stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
