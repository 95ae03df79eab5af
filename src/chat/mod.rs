//! Conversations and the model's own chat template.
//!
//! Everything that turns messages into a prompt goes through here — the trainer (so the loss mask lines up
//! with what the model sees at inference), the server, and the dataset tools — so a conversation is
//! rendered the same way everywhere. Templates are the Jinja `chat_template` that ships with a model;
//! we render them the way `transformers` does (trim_blocks, lstrip_blocks, Python string methods, a
//! `tojson` that writes what Python's `json.dumps` writes) so token ids match the reference tokenizer.

mod format;
mod json;
mod ollama;
mod template;

pub use format::{ChatFormat, UnknownFormat};
pub use json::{python_json, python_json_with};
pub use ollama::{go_any, ollama_arguments, ollama_tool};
pub use template::{ChatTemplate, TemplateError};

use serde::{Deserialize, Serialize};

/// The prompt a server sends the model for a chat request: the request's messages, with `system` first when
/// the request has none of its own (Ollama gives the Modelfile's SYSTEM the same way), rendered through the
/// generation prompt. The built-in server, the evaluation's template check and the trainer (which gives
/// training conversations the same system prompt) agree on this one definition.
pub fn server_prompt(
    template: &ChatTemplate,
    system: Option<&str>,
    messages: &[Message],
    tools: &[serde_json::Value],
) -> Result<String, TemplateError> {
    match system {
        Some(s) if messages.first().is_none_or(|m| m.role != Role::System) => {
            let mut with = Vec::with_capacity(messages.len() + 1);
            with.push(Message::system(s));
            with.extend_from_slice(messages);
            template.render(&with, tools, true)
        }
        _ => template.render(messages, tools, true),
    }
}

/// Keys sorted at every level (for `tojson(sort_keys=true)`).
pub(crate) fn sorted_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted_keys(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

/// Who said a message. `tool` is the result of a tool call (Llama 3.1 renders it as `ipython`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A function call made by the assistant. Arguments are always a JSON value, never a JSON-encoded string:
/// OpenAI sends strings, and rendering those unmodified would double-encode them in the prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: which function produced this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_name: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: calls,
            tool_name: None,
        }
    }

    pub fn tool_result(name: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_name: Some(name.into()),
        }
    }

    /// The shape chat templates expect (the OpenAI / `transformers` message dict).
    fn to_template_value(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), self.role.as_str().into());
        m.insert("content".into(), self.content.clone().into());
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "type": "function",
                        "function": { "name": c.name, "arguments": ollama_arguments(&c.arguments) },
                    })
                })
                .collect::<Vec<_>>();
            m.insert("tool_calls".into(), calls.into());
        }
        if let Some(name) = &self.tool_name {
            m.insert("name".into(), name.clone().into());
        }
        m.into()
    }
}
