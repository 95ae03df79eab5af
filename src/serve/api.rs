//! Request bodies of the Ollama and OpenAI endpoints, and the pure translation of engine events into their
//! response lines (Ollama NDJSON, OpenAI SSE).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::{DoneReason, Finish};
use super::options::Options;
use super::text::{may_be_tool_call, parse_tool_calls};
use crate::chat::{Message, Role, ToolCall};

#[derive(Debug, Deserialize)]
pub struct ApiToolFunction {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Debug, Deserialize)]
pub struct ApiToolCall {
    pub function: ApiToolFunction,
}

#[derive(Debug, Deserialize)]
pub struct ApiMessage {
    pub role: String,
    /// A string (Ollama) or, on `/v1`, possibly an array of `{type:"text", text}` parts.
    #[serde(default)]
    pub content: Value,
    #[serde(default)]
    pub tool_calls: Vec<ApiToolCall>,
    #[serde(default)]
    pub tool_name: Option<String>,
    /// OpenAI's name for the same thing on tool results.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<ApiMessage>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    #[serde(default)]
    pub model: String,
    pub input: Value,
}

#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    #[serde(default)]
    pub model: String,
    /// Older clients send `name`.
    #[serde(default)]
    pub name: String,
}

/// OpenAI's `/v1/chat/completions` body, the fields we honour.
#[derive(Debug, Deserialize)]
pub struct OpenAiChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<ApiMessage>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub response_format: Option<Value>,
    /// Token id (as a string, as OpenAI's JSON has it) → bias in [-100, 100].
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, f32>>,
}

impl OpenAiChatRequest {
    /// `logit_bias` as (token, bias) pairs; ids are checked against the vocabulary when the job is submitted.
    pub fn logit_bias(&self) -> Result<Vec<(i32, f32)>, String> {
        let Some(map) = &self.logit_bias else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(k, &v)| {
                let id: i32 = k
                    .parse()
                    .map_err(|_| format!("logit_bias: key {k:?} is not a token id"))?;
                if !(-100.0..=100.0).contains(&v) {
                    return Err(format!("logit_bias[{k}]: {v} is outside [-100, 100]"));
                }
                // OpenAI documents -100 as a ban; an added -100 can still lose to a wide logit range.
                Ok((id, if v <= -100.0 { f32::NEG_INFINITY } else { v }))
            })
            .collect()
    }

    pub fn options(&self) -> Result<Options, String> {
        let stop = match &self.stop {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or("stop: expected strings"))
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("stop: expected a string or an array of strings".into()),
        };
        Ok(Options {
            num_predict: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            ..Options::default()
        })
    }

    /// `response_format` as an Ollama `format`.
    pub fn format(&self) -> Result<Option<Value>, String> {
        let Some(rf) = &self.response_format else {
            return Ok(None);
        };
        match rf.get("type").and_then(Value::as_str) {
            Some("text") | None => Ok(None),
            Some("json_object") => Ok(Some(json!("json"))),
            Some("json_schema") => rf
                .pointer("/json_schema/schema")
                .cloned()
                .map(Some)
                .ok_or_else(|| "response_format.json_schema.schema is required".into()),
            Some(other) => Err(format!("response_format.type {other:?} is not supported")),
        }
    }
}

/// Reads a request body as `T`. A problem names the field it is in (`messages[0].content: invalid type: ...`), so
/// a client learns which part of its request to fix; the handlers answer it with 400.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.is_empty() {
        return Err("missing request body".into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Validates request messages into chat messages: roles lower-cased, arguments as objects.
pub fn to_messages(messages: &[ApiMessage]) -> Result<Vec<Message>, String> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.to_ascii_lowercase().as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => return Err(format!("messages[{i}]: unknown role {other:?}")),
            };
            let content = match &m.content {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                _ => return Err(format!("messages[{i}].content: expected a string")),
            };
            let tool_calls = m
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments = match &c.function.arguments {
                        Value::String(s) => serde_json::from_str(s)
                            .map_err(|e| format!("messages[{i}].tool_calls: arguments are not JSON: {e}"))?,
                        Value::Null => json!({}),
                        v => v.clone(),
                    };
                    Ok(ToolCall {
                        name: c.function.name.clone(),
                        arguments,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Message {
                role,
                content,
                tool_calls,
                tool_name: m.tool_name.clone().or_else(|| m.name.clone()),
            })
        })
        .collect()
}

/// RFC 3339 with nanoseconds in UTC, as Go's `time.RFC3339Nano` prints `created_at`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Chat,
    Generate,
    OpenAi,
}

/// Turns engine output into response objects for one request. Holds content back while it may still be a
/// tool call (only when the request declared tools).
pub struct Responder {
    pub flavor: Flavor,
    pub model: String,
    pub tool_names: Vec<String>,
    pub id: String,
    pub created: u64,
    pub started: std::time::Instant,
    content: String,
    held: String,
    holding: bool,
    sent_role: bool,
}

impl Responder {
    pub fn new(flavor: Flavor, model: &str, tools: &[Value], id: String) -> Self {
        let tool_names: Vec<String> = tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str).map(str::to_string))
            .collect();
        Responder {
            flavor,
            model: model.to_string(),
            holding: !tool_names.is_empty(),
            tool_names,
            id,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            started: std::time::Instant::now(),
            content: String::new(),
            held: String::new(),
            sent_role: false,
        }
    }

    /// A streamed piece; `None` when it is being held back.
    pub fn piece(&mut self, text: &str) -> Option<Value> {
        self.content.push_str(text);
        if self.holding {
            self.held.push_str(text);
            if may_be_tool_call(&self.held) {
                return None;
            }
            self.holding = false;
            let held = std::mem::take(&mut self.held);
            return Some(self.chunk(&held));
        }
        Some(self.chunk(text))
    }

    fn chunk(&mut self, text: &str) -> Value {
        let now = rfc3339(std::time::SystemTime::now());
        match self.flavor {
            Flavor::Chat => json!({"model": self.model, "created_at": now,
                "message": {"role": "assistant", "content": text}, "done": false}),
            Flavor::Generate => json!({"model": self.model, "created_at": now, "response": text, "done": false}),
            Flavor::OpenAi => {
                let mut delta = json!({"content": text});
                if !self.sent_role {
                    delta["role"] = json!("assistant");
                    self.sent_role = true;
                }
                json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "system_fingerprint": "fp_fireweave",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
            }
        }
    }

    fn tool_calls(&self) -> Option<Vec<ToolCall>> {
        if self.tool_names.is_empty() {
            return None;
        }
        parse_tool_calls(&self.content, &self.tool_names)
    }

    fn ollama_calls(calls: &[ToolCall]) -> Value {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"id": format!("call_{}", short_id(i as u64)),
                    "function": {"index": i, "name": c.name, "arguments": c.arguments}})
            })
            .collect()
    }

    fn openai_calls(calls: &[ToolCall], streaming: bool) -> Value {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({"id": format!("call_{}", short_id(i as u64)), "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()}});
                if streaming {
                    v["index"] = json!(i);
                }
                v
            })
            .collect()
    }

    fn stats(&self, f: &Finish, v: &mut Value) {
        v["done_reason"] = json!(f.reason.as_str());
        v["total_duration"] = json!(self.started.elapsed().as_nanos() as u64);
        v["load_duration"] = json!(0);
        v["prompt_eval_count"] = json!(f.prompt_tokens);
        v["prompt_eval_duration"] = json!(f.prompt_ns);
        v["eval_count"] = json!(f.eval_tokens);
        v["eval_duration"] = json!(f.eval_ns);
    }

    fn finish_reason(f: &Finish, calls: bool) -> &'static str {
        if calls {
            "tool_calls"
        } else if f.reason == DoneReason::Length {
            "length"
        } else {
            "stop"
        }
    }

    /// The last streamed objects: held-back text or tool calls, then the final line.
    pub fn stream_end(&mut self, f: &Finish) -> Vec<Value> {
        let calls = self.tool_calls();
        let mut out = Vec::new();
        if calls.is_none() && !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            out.push(self.chunk(&held));
        }
        let now = rfc3339(std::time::SystemTime::now());
        match self.flavor {
            Flavor::Chat => {
                if let Some(c) = &calls {
                    out.push(json!({"model": self.model, "created_at": now,
                        "message": {"role": "assistant", "content": "", "tool_calls": Self::ollama_calls(c)},
                        "done": false}));
                }
                let mut last = json!({"model": self.model, "created_at": now,
                    "message": {"role": "assistant", "content": ""}, "done": true});
                self.stats(f, &mut last);
                out.push(last);
            }
            Flavor::Generate => {
                let mut last = json!({"model": self.model, "created_at": now, "response": "", "done": true,
                    "context": f.tokens});
                self.stats(f, &mut last);
                out.push(last);
            }
            Flavor::OpenAi => {
                if let Some(c) = &calls {
                    out.push(
                        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "system_fingerprint": "fp_fireweave",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                            "tool_calls": Self::openai_calls(c, true)}, "finish_reason": null}]}),
                    );
                }
                out.push(
                    json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "system_fingerprint": "fp_fireweave",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": Self::finish_reason(f, calls.is_some())}],
                    "usage": {"prompt_tokens": f.prompt_tokens, "completion_tokens": f.eval_tokens,
                        "total_tokens": f.prompt_tokens + f.eval_tokens}}),
                );
            }
        }
        out
    }

    /// The single object of a non-streaming response.
    pub fn whole(&mut self, f: &Finish) -> Value {
        let calls = self.tool_calls();
        let content = if calls.is_some() {
            String::new()
        } else {
            self.content.clone()
        };
        let now = rfc3339(std::time::SystemTime::now());
        match self.flavor {
            Flavor::Chat => {
                let mut message = json!({"role": "assistant", "content": content});
                if let Some(c) = &calls {
                    message["tool_calls"] = Self::ollama_calls(c);
                }
                let mut v = json!({"model": self.model, "created_at": now, "message": message, "done": true});
                self.stats(f, &mut v);
                v
            }
            Flavor::Generate => {
                let mut v = json!({"model": self.model, "created_at": now, "response": content, "done": true,
                    "context": f.tokens});
                self.stats(f, &mut v);
                v
            }
            Flavor::OpenAi => {
                let mut message = json!({"role": "assistant", "content": content});
                if let Some(c) = &calls {
                    message["tool_calls"] = Self::openai_calls(c, false);
                }
                json!({"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                    "system_fingerprint": "fp_fireweave",
                    "choices": [{"index": 0, "message": message, "finish_reason": Self::finish_reason(f, calls.is_some())}],
                    "usage": {"prompt_tokens": f.prompt_tokens, "completion_tokens": f.eval_tokens,
                        "total_tokens": f.prompt_tokens + f.eval_tokens}})
            }
        }
    }
}

/// Eight lowercase alphanumerics, unique enough within a process for call and completion ids.
pub fn short_id(salt: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ salt;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ALPHABET[((x >> 33) % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish() -> Finish {
        Finish {
            reason: DoneReason::Stop,
            prompt_tokens: 3,
            eval_tokens: 2,
            prompt_ns: 10,
            eval_ns: 20,
            tokens: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn timestamps() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_764_074_002, 5);
        assert_eq!(rfc3339(t), "2025-11-25T12:33:22.000000005Z");
    }

    #[test]
    fn tool_call_output_becomes_tool_calls_not_text() {
        let tools = vec![json!({"type": "function", "function": {"name": "check_traffic_flow"}})];
        let mut r = Responder::new(Flavor::Chat, "m", &tools, "x".into());
        assert_eq!(r.piece("{\"name\": \"check_traffic_flow\", "), None);
        assert_eq!(r.piece("\"parameters\": {\"port\": 22}}"), None);
        let end = r.stream_end(&finish());
        assert_eq!(end.len(), 2);
        assert_eq!(end[0]["message"]["tool_calls"][0]["function"]["arguments"]["port"], 22);
        assert_eq!(end[1]["done"], true);
        assert_eq!(end[1]["eval_count"], 2);
        let mut o = Responder::new(Flavor::OpenAi, "m", &tools, "chatcmpl-1".into());
        o.piece("{\"name\": \"check_traffic_flow\", \"parameters\": {\"port\": 22}}");
        let whole = o.whole(&finish());
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"port\":22}"
        );
    }

    #[test]
    fn plain_text_with_tools_is_released_once_clearly_text() {
        let tools = vec![json!({"type": "function", "function": {"name": "f"}})];
        let mut r = Responder::new(Flavor::Chat, "m", &tools, "x".into());
        assert_eq!(r.piece(" "), None);
        let v = r.piece("Hi").unwrap();
        assert_eq!(v["message"]["content"], " Hi");
        let whole = r.whole(&finish());
        assert_eq!(whole["message"]["content"], " Hi");
        assert!(whole["message"].get("tool_calls").is_none());
    }

    #[test]
    fn messages_validate_roles_and_arguments() {
        let m: Vec<ApiMessage> = serde_json::from_value(json!([
            {"role": "User", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "content": "ok", "tool_name": "f"}
        ]))
        .unwrap();
        let msgs = to_messages(&m).unwrap();
        assert_eq!(msgs[0].role, Role::User);
        assert_eq!(msgs[1].tool_calls[0].arguments["a"], 1);
        let bad: Vec<ApiMessage> = serde_json::from_value(json!([{"role": "robot", "content": "x"}])).unwrap();
        assert!(to_messages(&bad).unwrap_err().contains("messages[0]"));
    }
}
