//! The three provider APIs, one request shape each, with retries. The API key never appears in logs,
//! errors or Debug output.

use super::limiter::TokenBudget;
use super::{SynthError, Tuning};
use crate::api::SecretKeyRef;
use crate::api::dataset::{Synthesis, SynthesisProvider};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An API key; `Debug` prints a redaction.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The variable the operator fills from the Dataset's `synthesis.apiKeySecretRef`.
pub const OPERATOR_KEY_ENV: &str = "FIREWEAVE_SYNTHESIS_API_KEY";

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// Where the key comes from, first match wins: `FIREWEAVE_SYNTHESIS_API_KEY` (what the operator's Job sets
    /// from `apiKeySecretRef`), the Secret mounted as `<secrets>/<name>/<key>`, then the provider's usual
    /// variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`); Ollama needs none.
    pub fn resolve(
        provider: SynthesisProvider,
        secret: Option<&SecretKeyRef>,
        secrets: &Path,
    ) -> Result<Option<Self>, SynthError> {
        if let Ok(k) = std::env::var(OPERATOR_KEY_ENV)
            && !k.trim().is_empty()
        {
            return Ok(Some(ApiKey(k.trim().to_string())));
        }
        if let Some(r) = secret {
            let path = secrets.join(&r.name).join(&r.key);
            let text = std::fs::read_to_string(&path).map_err(|source| SynthError::KeyFile { path, source })?;
            return Ok(Some(ApiKey(text.trim().to_string())));
        }
        let env = match provider {
            SynthesisProvider::Openai => "OPENAI_API_KEY",
            SynthesisProvider::Anthropic => "ANTHROPIC_API_KEY",
            SynthesisProvider::Ollama => return Ok(std::env::var("OLLAMA_API_KEY").ok().map(ApiKey)),
        };
        match std::env::var(env) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(ApiKey(k.trim().to_string()))),
            _ => Err(SynthError::NoKey { provider, env }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Completion {
    pub text: String,
    /// Tokens the provider reports (prompt + completion); the estimate when it reports none.
    pub tokens: u64,
}

pub(super) struct Client {
    http: reqwest::Client,
    provider: SynthesisProvider,
    url: String,
    model: String,
    max_tokens: u32,
    key: Option<ApiKey>,
    next_id: AtomicU64,
}

enum Failure {
    /// Worth another try (429, 5xx, connection trouble), after at least this long.
    Retry(String, Option<Duration>),
    Fatal(String),
}

impl Client {
    pub(super) fn new(spec: &Synthesis, key: Option<ApiKey>, timeout: Duration) -> Self {
        let base = spec.endpoint.clone().unwrap_or_else(|| {
            match spec.provider {
                SynthesisProvider::Openai => "https://api.openai.com/v1",
                SynthesisProvider::Anthropic => "https://api.anthropic.com",
                SynthesisProvider::Ollama => "http://127.0.0.1:11434",
            }
            .to_string()
        });
        let base = base.trim_end_matches('/');
        let url = match spec.provider {
            SynthesisProvider::Openai if base.ends_with("/chat/completions") => base.to_string(),
            SynthesisProvider::Openai => format!("{base}/chat/completions"),
            SynthesisProvider::Anthropic if base.ends_with("/messages") => base.to_string(),
            SynthesisProvider::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
            SynthesisProvider::Anthropic => format!("{base}/v1/messages"),
            SynthesisProvider::Ollama if base.ends_with("/api/chat") => base.to_string(),
            SynthesisProvider::Ollama => format!("{base}/api/chat"),
        };
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Client {
            http,
            provider: spec.provider,
            url,
            model: spec.model.clone(),
            max_tokens: spec.max_tokens,
            key,
            next_id: AtomicU64::new(0),
        }
    }

    /// Err carries (attempts made, last failure).
    pub(super) async fn complete_with_retries(
        &self,
        system: &str,
        user: &str,
        budget: &TokenBudget,
        estimate: u64,
        tuning: &Tuning,
    ) -> Result<Completion, (u32, String)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ticket = budget
                .reserve(estimate, self.next_id.fetch_add(1, Ordering::Relaxed))
                .await;
            match self.complete(system, user).await {
                Ok(mut c) => {
                    if c.tokens == 0 {
                        c.tokens = estimate;
                    }
                    budget.settle(ticket, c.tokens);
                    return Ok(c);
                }
                Err(Failure::Fatal(m)) => return Err((attempt, m)),
                Err(Failure::Retry(m, after)) => {
                    // A rejected request still counts against the budget: the provider may have counted it.
                    if attempt >= tuning.max_attempts {
                        return Err((attempt, m));
                    }
                    let backoff = tuning
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(6))
                        .min(Duration::from_secs(60));
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %m, "retrying the synthesis request");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn complete(&self, system: &str, user: &str) -> Result<Completion, Failure> {
        let (body, req) = match self.provider {
            SynthesisProvider::Openai => (
                json!({"model": self.model, "max_tokens": self.max_tokens, "temperature": 0.8,
                       "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}),
                self.http.post(&self.url),
            ),
            SynthesisProvider::Anthropic => (
                json!({"model": self.model, "max_tokens": self.max_tokens, "system": system,
                       "messages": [{"role": "user", "content": user}]}),
                self.http.post(&self.url).header("anthropic-version", "2023-06-01"),
            ),
            SynthesisProvider::Ollama => (
                json!({"model": self.model, "stream": false, "format": "json",
                       "options": {"temperature": 0.8, "num_predict": self.max_tokens},
                       "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}),
                self.http.post(&self.url),
            ),
        };
        let req = match (&self.key, self.provider) {
            (Some(k), SynthesisProvider::Anthropic) => req.header("x-api-key", &k.0),
            (Some(k), _) => req.bearer_auth(&k.0),
            (None, _) => req,
        };
        let resp = req
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("{}", e.without_url()), None))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 300.0)));
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Retry(format!("{}", e.without_url()), None))?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Retry(
                format!("HTTP {status}: {}", excerpt(&text)),
                retry_after,
            ));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(format!("HTTP {status}: {}", excerpt(&text))));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::Fatal(format!("the {:?} API answered non-JSON: {e}", self.provider)))?;
        let (content, tokens) = match self.provider {
            SynthesisProvider::Openai => (
                v.pointer("/choices/0/message/content")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                v.pointer("/usage/total_tokens").and_then(Value::as_u64).unwrap_or(0),
            ),
            SynthesisProvider::Anthropic => (
                v.get("content").and_then(Value::as_array).map(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("")
                }),
                v.pointer("/usage/input_tokens").and_then(Value::as_u64).unwrap_or(0)
                    + v.pointer("/usage/output_tokens").and_then(Value::as_u64).unwrap_or(0),
            ),
            SynthesisProvider::Ollama => (
                v.pointer("/message/content")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                v.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0)
                    + v.get("eval_count").and_then(Value::as_u64).unwrap_or(0),
            ),
        };
        // An answer without text is saved as malformed output (a rejection), not retried forever.
        Ok(Completion {
            text: content.unwrap_or_default(),
            tokens,
        })
    }
}

fn excerpt(s: &str) -> &str {
    let cut = s.char_indices().nth(200).map_or(s.len(), |(i, _)| i);
    &s[..cut]
}
