//! The HTTP surface: Ollama's endpoints, OpenAI's chat completions, and the operational endpoints.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::api::{
    ChatRequest, EmbedRequest, Flavor, GenerateRequest, OpenAiChatRequest, Responder, ShowRequest, rfc3339, short_id,
    to_messages,
};
use super::engine::{EmbedJob, Event, GenJob, Job};
use super::metrics::Metrics;
use super::model::ServedModel;
use super::options::Options;
use crate::chat::Message;

#[derive(Clone)]
pub struct AppState {
    pub models: Arc<Vec<Arc<ServedModel>>>,
    pub metrics: Metrics,
}

/// An error with Ollama's body (`{"error": …}`) or, on `/v1`, OpenAI's.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    openai: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            openai: false,
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn openai(mut self) -> Self {
        self.openai = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.openai {
            let kind = if self.status.is_client_error() {
                "invalid_request_error"
            } else {
                "api_error"
            };
            json!({"error": {"message": self.message, "type": kind, "param": null, "code": null}})
        } else {
            json!({"error": self.message})
        };
        (self.status, Json(body)).into_response()
    }
}

const BUSY: &str = "server busy, please try again.  maximum pending requests exceeded";

pub fn router(state: AppState) -> Router {
    Router::new()
        // HEAD is answered by the GET route without a body, as Ollama does.
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { Json(json!({"version": env!("CARGO_PKG_VERSION")})) }),
        )
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/embed", post(embed))
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/models", get(openai_models))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    state
        .metrics
        .requests
        .with_label_values(&[endpoint.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Parses a JSON body ourselves so a bad body is a 400 with Ollama's error shape, not axum's plain text.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    super::api::parse_body(body).map_err(ApiError::bad_request)
}

fn find(state: &AppState, name: &str) -> Result<Arc<ServedModel>, ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    // Ollama treats "name" and "name:latest" as the same model.
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    state
        .models
        .iter()
        .find(|m| m.config.name == bare || m.config.name == name)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("model \"{name}\" not found, try pulling it first"),
            )
        })
}

fn details(m: &ServedModel) -> Value {
    json!({"parent_model": "", "format": "gguf", "family": m.facts.architecture,
        "families": [m.facts.architecture], "parameter_size": m.facts.parameter_size,
        "quantization_level": m.facts.quantization_level})
}

fn full_name(m: &ServedModel) -> String {
    if m.config.name.contains(':') {
        m.config.name.clone()
    } else {
        format!("{}:latest", m.config.name)
    }
}

async fn tags(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            json!({"name": full_name(m), "model": full_name(m), "modified_at": rfc3339(m.facts.modified_at),
                "size": m.facts.size, "digest": m.facts.digest, "details": details(m)})
        })
        .collect();
    Json(json!({ "models": models }))
}

async fn ps(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .models
        .iter()
        .filter(|m| m.state.ready.load(Ordering::SeqCst))
        .map(|m| {
            // Models stay loaded for the life of the process, which Ollama shows as a far-future expiry.
            json!({"name": full_name(m), "model": full_name(m), "size": m.facts.size, "digest": m.facts.digest,
                "details": details(m), "expires_at": "2318-01-01T00:00:00Z", "size_vram": 0,
                "context_length": m.params.num_ctx})
        })
        .collect();
    Json(json!({ "models": models }))
}

async fn show(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: ShowRequest = parse(&body)?;
    let name = if req.model.is_empty() { req.name } else { req.model };
    let m = find(&state, &name)?;
    let params = serde_json::to_value(&m.config.parameters).unwrap_or_default();
    let mut parameters = String::new();
    if let Value::Object(map) = &params {
        for (k, v) in map {
            match v {
                Value::Array(items) => {
                    for item in items {
                        parameters.push_str(&format!("{k:<30} {}\n", item));
                    }
                }
                other => parameters.push_str(&format!("{k:<30} {other}\n")),
            }
        }
    }
    let template = m.template.as_ref().map(|t| t.source().to_string()).unwrap_or_default();
    let system = m.config.system.clone().unwrap_or_default();
    let mut modelfile = format!("FROM {}\n", m.config.path.display());
    if !system.is_empty() {
        modelfile.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
    }
    for line in parameters.lines() {
        modelfile.push_str(&format!("PARAMETER {line}\n"));
    }
    let arch = &m.facts.architecture;
    let mut capabilities = vec!["completion", "embedding"];
    if m.supports_tools() {
        capabilities.push("tools");
    }
    let mut model_info = serde_json::Map::new();
    model_info.insert("general.architecture".into(), json!(arch));
    model_info.insert("general.parameter_count".into(), json!(m.facts.parameter_count));
    model_info.insert(format!("{arch}.context_length"), json!(m.facts.context_length));
    model_info.insert(format!("{arch}.embedding_length"), json!(m.facts.embedding_length));
    Ok(Json(json!({
        "modelfile": modelfile, "parameters": parameters, "template": template, "system": system,
        "details": details(&m),
        "model_info": model_info,
        "capabilities": capabilities,
        "modified_at": rfc3339(m.facts.modified_at),
    })))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let waiting: Vec<&str> = state
        .models
        .iter()
        .filter(|m| !m.state.ready.load(Ordering::SeqCst))
        .map(|m| m.config.name.as_str())
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", waiting.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    // The two gauges are read from the engines' counters at scrape time, summed over the models: set from the
    // request and engine threads instead, a late write could leave a value that was already stale (a queue
    // depth of 1 with nothing queued), and with several models each engine overwrote the others' figure.
    let (queued, active) = state.models.iter().fold((0, 0), |(q, a), m| {
        (
            q + m.state.queued.load(Ordering::SeqCst),
            a + m.state.active.load(Ordering::SeqCst),
        )
    });
    state.metrics.queue_depth.set(queued as i64);
    state.metrics.active_slots.set(active as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openai_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            let created = m
                .facts
                .modified_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            json!({"id": m.config.name, "object": "model", "created": created, "owned_by": "library"})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `format` → GBNF: "json" is any JSON object (Ollama's JSON mode), an object is a JSON schema.
fn grammar_for(format: Option<&Value>) -> Result<Option<String>, ApiError> {
    let schema = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s == "json" => json!({"type": "object"}),
        Some(Value::Object(_)) => format.cloned().unwrap_or_default(),
        Some(other) => return Err(ApiError::bad_request(format!("invalid format: {other}"))),
    };
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON schema in format: {e}")))
}

struct Prepared {
    model: Arc<ServedModel>,
    prompt: String,
    add_special: bool,
    options: Options,
    grammar: Option<String>,
    logit_bias: Vec<(i32, f32)>,
}

fn render_chat(m: &ServedModel, messages: Vec<Message>, tools: &[Value]) -> Result<String, ApiError> {
    let Some(template) = &m.template else {
        return Err(ApiError::bad_request(format!(
            "model \"{}\" has no chat template; use /api/generate with raw=true",
            m.config.name
        )));
    };
    if !tools.is_empty() && !m.supports_tools() {
        return Err(ApiError::bad_request(format!(
            "\"{}\" does not support tools",
            m.config.name
        )));
    }
    crate::chat::server_prompt(template, m.config.system.as_deref(), &messages, tools)
        .map_err(|e| ApiError::bad_request(format!("rendering the chat template: {e}")))
}

/// Queues a generation; `Err` is the 503 when the queue is full.
fn submit(p: Prepared, endpoint: &'static str) -> Result<(mpsc::UnboundedReceiver<Event>, usize), ApiError> {
    let unknown = p.options.unknown_keys();
    if !unknown.is_empty() {
        tracing::warn!(keys = ?unknown, "ignoring unknown options");
    }
    let mut sampling = p.options.over(&p.model.config.parameters).resolve();
    let n_vocab = p.model.model.n_vocab();
    if let Some((id, _)) = p.logit_bias.iter().find(|(id, _)| !(0..n_vocab).contains(id)) {
        return Err(ApiError::bad_request(format!(
            "logit_bias: token id {id} is outside the vocabulary (0..{n_vocab})"
        )));
    }
    sampling.logit_bias = p.logit_bias;
    // Llama 3.1's end-of-turn markers end generation even in a GGUF whose vocabulary does not flag them as
    // end-of-generation tokens (they would otherwise be printed as text).
    for marker in ["<|eot_id|>", "<|eom_id|>"] {
        if !sampling.stop.iter().any(|s| s == marker) {
            sampling.stop.push(marker.to_string());
        }
    }
    let prompt = p.model.model.vocab().tokenize(p.prompt.as_bytes(), p.add_special, true);
    let num_ctx = p.model.params.num_ctx as usize;
    if prompt.is_empty() {
        return Err(ApiError::bad_request("prompt is empty"));
    }
    if prompt.len() >= num_ctx {
        return Err(ApiError::bad_request(format!(
            "input length ({} tokens) exceeds the context length ({num_ctx} tokens)",
            prompt.len()
        )));
    }
    let n_prompt = prompt.len();
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job::Generate(GenJob {
        prompt,
        sampling,
        grammar: p.grammar,
        events: tx,
        endpoint,
    });
    enqueue(&p.model, job)?;
    Ok((rx, n_prompt))
}

fn enqueue(m: &ServedModel, job: Job) -> Result<(), ApiError> {
    m.state.queued.fetch_add(1, Ordering::SeqCst);
    match m.jobs.try_send(job) {
        Ok(()) => Ok(()),
        Err(e) => {
            m.state.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY)),
                TrySendError::Disconnected(_) => {
                    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model is shutting down"))
                }
            }
        }
    }
}

/// Streams NDJSON (Ollama) or SSE (OpenAI). An error after the first byte becomes a final `{"error"}` line,
/// as in Ollama; dropping this stream (client gone) closes the event channel, which frees the slot.
fn stream_response(rx: mpsc::UnboundedReceiver<Event>, responder: Responder) -> Response {
    let sse = responder.flavor == Flavor::OpenAi;
    let stream = futures::stream::unfold(Some((rx, responder)), move |state| async move {
        let (mut rx, mut responder) = state?;
        loop {
            match rx.recv().await {
                Some(Event::Text(t)) => {
                    if let Some(v) = responder.piece(&t) {
                        return Some((Ok::<_, Infallible>(frame(sse, &v)), Some((rx, responder))));
                    }
                }
                Some(Event::Done(f)) => {
                    let mut out: String = responder.stream_end(&f).iter().map(|v| frame(sse, v)).collect();
                    if sse {
                        out.push_str("data: [DONE]\n\n");
                    }
                    return Some((Ok(out), None));
                }
                Some(Event::Error(e)) => {
                    let v = if sse {
                        json!({"error": {"message": e, "type": "api_error"}})
                    } else {
                        json!({"error": e})
                    };
                    return Some((Ok(frame(sse, &v)), None));
                }
                None => return Some((Ok(frame(sse, &json!({"error": "generation stopped"}))), None)),
            }
        }
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream.boxed()),
    )
        .into_response()
}

fn frame(sse: bool, v: &Value) -> String {
    if sse {
        format!("data: {v}\n\n")
    } else {
        format!("{v}\n")
    }
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Event>, mut responder: Responder) -> Result<Value, ApiError> {
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => {
                responder.piece(&t);
            }
            Some(Event::Done(f)) => return Ok(responder.whole(&f)),
            Some(Event::Error(e)) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
            None => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "generation stopped")),
        }
    }
}

async fn respond(
    rx: mpsc::UnboundedReceiver<Event>,
    responder: Responder,
    stream: bool,
    openai: bool,
) -> Result<Response, ApiError> {
    if stream {
        Ok(stream_response(rx, responder))
    } else {
        let v = collect(rx, responder)
            .await
            .map_err(|e| if openai { e.openai() } else { e })?;
        Ok(Json(v).into_response())
    }
}

async fn chat(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    let m = find(&state, &req.model)?;
    let messages = to_messages(&req.messages).map_err(ApiError::bad_request)?;
    let prompt = render_chat(&m, messages, &req.tools)?;
    let grammar = grammar_for(req.format.as_ref())?;
    let responder = Responder::new(Flavor::Chat, &req.model, &req.tools, String::new());
    let (rx, _) = submit(
        Prepared {
            model: m,
            prompt,
            add_special: false,
            options: req.options.unwrap_or_default(),
            grammar,
            logit_bias: Vec::new(),
        },
        "/api/chat",
    )?;
    respond(rx, responder, req.stream.unwrap_or(true), false).await
}

async fn generate(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: GenerateRequest = parse(&body)?;
    let m = find(&state, &req.model)?;
    if req.raw && (req.template.is_some() || req.system.is_some()) {
        return Err(ApiError::bad_request(
            "raw mode does not support template, system, or context",
        ));
    }
    if req.template.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "per-request Go templates are not supported; set the model's template in the server config",
        ));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "\"{}\" does not support insert",
            req.model
        )));
    }
    let (prompt, add_special) = if req.raw || m.template.is_none() {
        (req.prompt.clone(), true)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = req.system.clone().or_else(|| m.config.system.clone()) {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(req.prompt.clone()));
        (render_chat(&m, messages, &[])?, false)
    };
    let grammar = grammar_for(req.format.as_ref())?;
    let responder = Responder::new(Flavor::Generate, &req.model, &[], String::new());
    let (rx, _) = submit(
        Prepared {
            model: m,
            prompt,
            add_special,
            options: req.options.unwrap_or_default(),
            grammar,
            logit_bias: Vec::new(),
        },
        "/api/generate",
    )?;
    respond(rx, responder, req.stream.unwrap_or(true), false).await
}

async fn openai_chat(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: OpenAiChatRequest = parse(&body).map_err(ApiError::openai)?;
    let m = find(&state, &req.model).map_err(ApiError::openai)?;
    let messages = to_messages(&req.messages).map_err(|e| ApiError::bad_request(e).openai())?;
    let prompt = render_chat(&m, messages, &req.tools).map_err(ApiError::openai)?;
    let options = req.options().map_err(|e| ApiError::bad_request(e).openai())?;
    let format = req.format().map_err(|e| ApiError::bad_request(e).openai())?;
    let logit_bias = req.logit_bias().map_err(|e| ApiError::bad_request(e).openai())?;
    let grammar = grammar_for(format.as_ref()).map_err(ApiError::openai)?;
    let responder = Responder::new(
        Flavor::OpenAi,
        &req.model,
        &req.tools,
        format!("chatcmpl-{}", short_id(0)),
    );
    let (rx, _) = submit(
        Prepared {
            model: m,
            prompt,
            add_special: false,
            options,
            grammar,
            logit_bias,
        },
        "/v1/chat/completions",
    )
    .map_err(ApiError::openai)?;
    respond(rx, responder, req.stream, true).await
}

async fn embed(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    let req: EmbedRequest = parse(&body)?;
    let m = find(&state, &req.model)?;
    let inputs: Vec<String> = match req.input {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_request("input: expected a string or an array of strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::bad_request("input: expected a string or an array of strings")),
    };
    let vocab = m.model.vocab();
    let tokens: Vec<_> = inputs
        .iter()
        .map(|s| vocab.tokenize(s.as_bytes(), true, false))
        .collect();
    let num_ctx = m.params.num_ctx as usize;
    if let Some((i, t)) = tokens
        .iter()
        .enumerate()
        .find(|(_, t)| t.is_empty() || t.len() > num_ctx)
    {
        return Err(ApiError::bad_request(format!(
            "input[{i}]: {} tokens; must be between 1 and the context length {num_ctx}",
            t.len()
        )));
    }
    let prompt_eval_count: usize = tokens.iter().map(Vec::len).sum();
    let (reply, rx) = oneshot::channel();
    enqueue(&m, Job::Embed(EmbedJob { inputs: tokens, reply }))?;
    let embeddings = rx
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "embedding stopped"))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(json!({"model": req.model, "embeddings": embeddings,
        "total_duration": started.elapsed().as_nanos() as u64, "load_duration": 0,
        "prompt_eval_count": prompt_eval_count})))
}
