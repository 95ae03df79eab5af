//! Loading a served model: digest check, llama.cpp load, chat template, the facts `/api/tags` and
//! `/api/show` report, and the scheduler thread that owns its context.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use super::config::{ConfigError, ModelConfig, verify_sha256};
use super::engine::{self, EngineParams, EngineState, Job};
use super::metrics::Metrics;
use crate::chat::{ChatTemplate, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("initialising llama.cpp: {0}")]
    Backend(String),
    #[error("{path}: llama.cpp could not load the model: {reason}")]
    Load { path: String, reason: String },
    #[error("model {name:?}: chat template: {source}")]
    Template {
        name: String,
        #[source]
        source: TemplateError,
    },
    #[error("model {name:?}: starting the scheduler thread: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// What `/api/tags`, `/api/show` and `/api/ps` report about a model.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub architecture: String,
    pub parameter_count: u64,
    pub parameter_size: String,
    pub quantization_level: String,
    pub context_length: u32,
    pub embedding_length: i32,
    pub size: u64,
    pub digest: String,
    pub modified_at: SystemTime,
}

pub struct ServedModel {
    pub config: ModelConfig,
    pub facts: ModelFacts,
    /// None when the GGUF has no template and none was configured: only raw generation works then.
    pub template: Option<ChatTemplate>,
    pub model: Arc<LlamaModel>,
    pub jobs: SyncSender<Job>,
    pub state: Arc<EngineState>,
    pub params: EngineParams,
}

impl ServedModel {
    pub fn supports_tools(&self) -> bool {
        self.template.as_ref().is_some_and(|t| t.source().contains("tools"))
    }
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

pub(crate) fn backend() -> Result<&'static LlamaBackend, LoadError> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

/// llama.cpp's `general.file_type` numbers, as the quantization names people know.
pub fn file_type_name(ftype: u32) -> String {
    match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("ftype{other}"),
    }
    .to_string()
}

/// "134.52M", "8.0B": the way Ollama prints parameter counts.
pub fn parameter_size(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else {
        format!("{:.2}K", n / 1e3)
    }
}

/// Verifies, loads and starts one model. Returns the model and its scheduler thread.
pub fn load(
    config: ModelConfig,
    params: EngineParams,
    max_queue: usize,
    metrics: Metrics,
) -> Result<(Arc<ServedModel>, JoinHandle<()>), LoadError> {
    // /api/tags reports the bare hex, as Ollama does.
    let digest = verify_sha256(&config.path, config.sha256.as_ref())?.hex();
    let meta = std::fs::metadata(&config.path).map_err(|source| ConfigError::Io {
        path: config.path.clone(),
        source,
    })?;
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, &config.path, &LlamaModelParams::default()).map_err(|e| {
        LoadError::Load {
            path: config.path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let vocab = model.vocab();
    let token_text = |t| {
        vocab
            .text(t)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (bos, eos) = (token_text(vocab.bos()), token_text(vocab.eos()));
    let source = match &config.template {
        Some(t) => Some(t.clone()),
        None => model.chat_template(None).ok().and_then(|t| t.to_string().ok()),
    };
    let template = source
        .map(|s| ChatTemplate::new(&s, &bos, &eos))
        .transpose()
        .map_err(|source| LoadError::Template {
            name: config.name.clone(),
            source,
        })?;
    let architecture = model
        .meta_val_str("general.architecture")
        .unwrap_or_else(|_| "llama".into());
    let quantization_level = model
        .meta_val_str("general.file_type")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or_else(|| "unknown".into(), file_type_name);
    let facts = ModelFacts {
        architecture,
        parameter_count: model.n_params(),
        parameter_size: parameter_size(model.n_params()),
        quantization_level,
        context_length: model.n_ctx_train(),
        embedding_length: model.n_embd(),
        size: meta.len(),
        digest,
        modified_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    };
    let model = Arc::new(model);
    let state = Arc::new(EngineState::default());
    let (tx, rx) = std::sync::mpsc::sync_channel(max_queue);
    let thread = {
        let (model, state, params, name) = (model.clone(), state.clone(), params.clone(), config.name.clone());
        std::thread::Builder::new()
            .name(format!("llama-{}", config.name))
            .spawn(move || {
                if let Err(e) = engine::run(backend, &model, &params, rx, state, metrics, &name) {
                    tracing::error!(model = %name, error = %e, "scheduler stopped");
                }
            })
            .map_err(|source| LoadError::Thread {
                name: config.name.clone(),
                source,
            })?
    };
    tracing::info!(model = %config.name, path = %config.path.display(), digest = %facts.digest, "model loaded");
    Ok((
        Arc::new(ServedModel {
            config,
            facts,
            template,
            model,
            jobs: tx,
            state,
            params,
        }),
        thread,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(file_type_name(15), "Q4_K_M");
        assert_eq!(file_type_name(99), "ftype99");
        assert_eq!(parameter_size(134_515_008), "134.52M");
        assert_eq!(parameter_size(8_030_261_248), "8.0B");
    }
}
