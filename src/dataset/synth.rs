//! Synthesis: asks an LLM (OpenAI-compatible chat completions, Anthropic messages, or an Ollama endpoint —
//! so our own served model can teach) for examples per topic, within a tokens-per-minute budget, retrying
//! 429 and 5xx with backoff. Every answered batch is saved before the next request, so a crashed run resumes
//! where it stopped without asking again. Generated records then pass the same validation, scoring and dedup
//! as loaded ones; output that is not the JSON asked for becomes a `malformed_model_output` rejection.

mod client;
mod limiter;

pub use client::{ApiKey, Completion};
pub use limiter::TokenBudget;

use super::load::{self, Item, Origin, SourceOptions};
use super::reason::{Reason, Rejection};
use crate::api::dataset::{SourceFormat, Synthesis, SynthesisProvider, SynthesisTopic};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("synthesis: no API key for {provider:?}; set {env} or synthesis.apiKeySecretRef")]
    NoKey {
        provider: SynthesisProvider,
        env: &'static str,
    },
    #[error("synthesis: cannot read the API key secret {path}: {source}")]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error(
        "synthesis: {provider:?} request for topic {topic} batch {batch} failed after {attempts} attempts: {message}"
    )]
    Request {
        provider: SynthesisProvider,
        topic: String,
        batch: usize,
        attempts: u32,
        message: String,
    },
    #[error("synthesis: cannot write the batch cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("synthesis: cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Knobs the spec does not expose; tests shrink the window and the backoff.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub window: Duration,
    pub backoff: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
            max_attempts: 6,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Blocking entry point for the pipeline.
pub fn run(spec: &Synthesis, tools: &[Value], cache: &Path, secrets: &Path) -> Result<Vec<Item>, SynthError> {
    let key = ApiKey::resolve(spec.provider, spec.api_key_secret_ref.as_ref(), secrets)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SynthError::Runtime)?;
    rt.block_on(synthesize(spec, tools, cache, key, &Tuning::default()))
}

pub async fn synthesize(
    spec: &Synthesis,
    tools: &[Value],
    cache: &Path,
    key: Option<ApiKey>,
    tuning: &Tuning,
) -> Result<Vec<Item>, SynthError> {
    let client = client::Client::new(spec, key, tuning.timeout);
    let budget = Arc::new(TokenBudget::new(spec.tokens_per_minute as u64, tuning.window));
    let mut items = Vec::new();
    for topic in &spec.topics {
        let batches = topic.count.div_ceil(spec.batch_size) as usize;
        let dir = cache.join(safe_name(&topic.name));
        let stem = batch_stem(spec, topic);
        for b in 0..batches {
            let path = dir.join(format!("{stem}-{b:04}.jsonl"));
            if !path.exists() {
                let want = spec.batch_size.min(topic.count - b as u32 * spec.batch_size);
                let (system, user) = prompt(topic, want, tools);
                let estimate = ((system.len() + user.len()) / 4) as u64 + spec.max_tokens as u64;
                let completion = client
                    .complete_with_retries(&system, &user, &budget, estimate, tuning)
                    .await
                    .map_err(|(attempts, message)| SynthError::Request {
                        provider: spec.provider,
                        topic: topic.name.clone(),
                        batch: b,
                        attempts,
                        message,
                    })?;
                tracing::info!(topic = %topic.name, batch = b, tokens = completion.tokens, "batch generated");
                save_batch(&path, &completion.text, &topic.name)?;
            }
            items.extend(read_batch(&path, &topic.name)?);
        }
    }
    Ok(items)
}

/// Batches made under other settings (model, instructions, size) are not reused.
fn batch_stem(spec: &Synthesis, topic: &SynthesisTopic) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{:?}\0{}\0{}\0{}\0{}",
        spec.provider,
        spec.model,
        topic.instructions.as_deref().unwrap_or_default(),
        spec.batch_size,
        topic.count
    ));
    hex::encode(&h.finalize()[..6])
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prompt(topic: &SynthesisTopic, n: u32, tools: &[Value]) -> (String, String) {
    let system = "You write training data for a network-security assistant that also knows the FireWeave \
        platform (traffic flow analysis, firewall rule management, shadowed/unused rule detection, compliance \
        scans for PCI-DSS, SOC2, NIST and HIPAA, ServiceNow/Jira integration, topology collection). Answers \
        are accurate, specific and practical: real CLI commands and configuration in fenced code blocks, \
        Markdown lists for steps. Reply with JSON only, no prose around it."
        .to_string();
    let name = topic.name.to_lowercase();
    let shape = if name.contains("function") || name.contains("tool") {
        format!(
            "Each example is an object {{\"messages\": [...]}} in OpenAI chat format: a user request, an assistant \
             message with \"tool_calls\" ([{{\"type\":\"function\",\"function\":{{\"name\":…,\"arguments\":{{…}}}}}}]) \
             using only these tools, a \"tool\" message with a plausible JSON result, and a final assistant \
             answer explaining the result. Tools: {}",
            Value::from(tools.to_vec())
        )
    } else if name.contains("disambiguation") {
        "Each example is an object {\"question\": …, \"answer\": …} where the question is ambiguous (missing a \
         firewall, framework, direction or port) and the answer explains what is ambiguous, lists the possible \
         interpretations and asks a precise follow-up question."
            .to_string()
    } else {
        "Each example is an object {\"question\": …, \"answer\": …}; answers are 150-400 words.".to_string()
    };
    let user = format!(
        "Topic: {}\n{}\nWrite {n} distinct examples. {shape}\nReturn {{\"examples\": [ ... ]}}.",
        topic.name,
        topic.instructions.as_deref().unwrap_or_default()
    );
    (system, user)
}

/// Saves one answered batch as JSONL: one record per line, or one `malformedModelOutput` line when the
/// answer is not the JSON asked for. Written to a temporary name and renamed: a crash leaves no half batch.
fn save_batch(path: &Path, text: &str, topic: &str) -> Result<(), SynthError> {
    let mut out = String::new();
    match extract_examples(text) {
        Ok(examples) => {
            for mut e in examples {
                if let Value::Object(o) = &mut e {
                    o.entry("topic").or_insert_with(|| topic.into());
                }
                out.push_str(&e.to_string());
                out.push('\n');
            }
        }
        Err(detail) => {
            let cut = text.char_indices().nth(400).map_or(text.len(), |(i, _)| i);
            out.push_str(&json!({"malformedModelOutput": detail, "raw": &text[..cut]}).to_string());
            out.push('\n');
        }
    }
    let cache_err = |source| SynthError::Cache {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cache_err)?;
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, out).map_err(cache_err)?;
    std::fs::rename(&tmp, path).map_err(cache_err)
}

/// The examples in a model's answer: `{"examples":[…]}`, a bare array, or either inside a ```json fence, with
/// or without prose around it. Answers themselves contain ``` fences (inside JSON strings), so a fence is only
/// stripped when the whole answer is one; otherwise the outermost JSON value is taken.
pub fn extract_examples(text: &str) -> Result<Vec<Value>, String> {
    let t = text.trim();
    let v: Value = match serde_json::from_str(t) {
        Ok(v) => v,
        Err(_) => {
            let body = match t.strip_prefix("```") {
                Some(after) => {
                    let after = after.split_once('\n').map_or(after, |(_, rest)| rest);
                    after.rfind("```").map_or(after, |end| &after[..end])
                }
                None => t,
            };
            let start = body.find(['{', '[']).ok_or("the answer contains no JSON")?;
            let end = body.rfind(['}', ']']).ok_or("the answer contains no JSON")?;
            if end < start {
                return Err("the answer contains no JSON".into());
            }
            serde_json::from_str(&body[start..=end]).map_err(|e| format!("the answer is not valid JSON: {e}"))?
        }
    };
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("examples") {
            Some(Value::Array(a)) => a,
            _ => return Err("the answer has no \"examples\" array".into()),
        },
        _ => return Err("the answer is neither an array nor an object".into()),
    };
    if list.is_empty() {
        return Err("the answer has no examples".into());
    }
    Ok(list)
}

fn read_batch(path: &Path, topic: &str) -> Result<Vec<Item>, SynthError> {
    let bytes = std::fs::read(path).map_err(|source| SynthError::Cache {
        path: path.into(),
        source,
    })?;
    let file: Arc<str> = Arc::from(path.display().to_string());
    let opts = SourceOptions {
        format: SourceFormat::Auto,
        topic: Some(topic.into()),
        max_record_bytes: usize::MAX,
    };
    let mut items = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let origin = Origin {
            file: file.clone(),
            line: n + 1,
        };
        let parsed = match serde_json::from_slice::<Value>(line) {
            Ok(v) => match v.get("malformedModelOutput").and_then(Value::as_str) {
                Some(detail) => {
                    let raw = v.get("raw").and_then(Value::as_str).unwrap_or("");
                    Err(Rejection::new(Reason::MalformedModelOutput, detail).with_raw(raw))
                }
                None => load::convert(v, &opts),
            },
            Err(e) => Err(Rejection::new(
                Reason::MalformedJson,
                format!("batch cache line is not JSON: {e}"),
            )),
        };
        items.push(Item { origin, parsed });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::extract_examples;

    #[test]
    fn examples_are_found_with_fences_inside_answers_around_or_absent() {
        let inner = r#"{"examples": [{"question": "q", "answer": "run:\n```\nshow run\n```\ndone"}, {"question": "q2", "answer": "a"}]}"#;
        assert_eq!(extract_examples(inner).map(|v| v.len()), Ok(2));
        assert_eq!(
            extract_examples(&format!("```json\n{inner}\n```")).map(|v| v.len()),
            Ok(2)
        );
        assert_eq!(
            extract_examples(&format!("Here you go:\n{inner}\nEnjoy.")).map(|v| v.len()),
            Ok(2)
        );
        assert_eq!(
            extract_examples(r#"[{"question": "q", "answer": "a"}]"#).map(|v| v.len()),
            Ok(1)
        );
        assert!(extract_examples("I cannot help with that.").is_err());
        assert!(extract_examples(r#"{"examples": []}"#).is_err());
    }
}
