//! One JSON record → a [`Conversation`], from whichever of the three shapes it has. Structural problems are
//! rejections with a reason; content rules are `validate`'s job.

use super::load::{Conversation, SourceOptions};
use super::reason::{Reason, Rejection};
use crate::api::dataset::SourceFormat;
use crate::chat::{Message, Role, ToolCall};
use serde_json::{Map, Value};

/// Turns one JSON record into a conversation. Structural problems (no known shape, a missing field, an
/// unknown role) are rejections here; content rules live in `validate`.
pub fn convert(value: Value, opts: &SourceOptions) -> Result<Conversation, Rejection> {
    let mut obj = match value {
        Value::Object(o) => o,
        other => {
            return Err(Rejection::new(
                Reason::UnknownFormat,
                format!("record is a JSON {}, not an object", kind(&other)),
            ));
        }
    };
    let format = match opts.format {
        SourceFormat::Auto => detect(&obj)?,
        f => f,
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let topic = match obj.get("topic").or_else(|| obj.get("category")) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => opts.topic.clone(),
    };
    let tools = tools_of(obj.remove("tools"))?;
    let messages = match format {
        SourceFormat::Qa => qa_messages(&mut obj)?,
        SourceFormat::Sharegpt => sharegpt_messages(&mut obj)?,
        SourceFormat::Openai | SourceFormat::Auto => openai_messages(&mut obj)?,
    };
    Ok(Conversation {
        id,
        topic,
        messages,
        tools,
    })
}

fn detect(obj: &Map<String, Value>) -> Result<SourceFormat, Rejection> {
    if obj.contains_key("conversations") {
        Ok(SourceFormat::Sharegpt)
    } else if obj.contains_key("messages") {
        Ok(SourceFormat::Openai)
    } else if obj.contains_key("question") || obj.contains_key("answer") {
        Ok(SourceFormat::Qa)
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
        Err(Rejection::new(
            Reason::UnknownFormat,
            format!(
                "no question/answer, conversations or messages field (keys: {})",
                keys.join(", ")
            ),
        ))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn string_field(obj: &mut Map<String, Value>, key: &str, at: &str) -> Result<String, Rejection> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(Rejection::new(Reason::MissingField, format!("{at}{key} is missing"))),
        Some(other) => Err(Rejection::new(
            Reason::MissingField,
            format!("{at}{key} is a {}, not a string", kind(&other)),
        )),
    }
}

fn qa_messages(obj: &mut Map<String, Value>) -> Result<Vec<Message>, Rejection> {
    let mut messages = Vec::with_capacity(3);
    if let Some(Value::String(system)) = obj.remove("system") {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(string_field(obj, "question", "")?));
    messages.push(Message::assistant(string_field(obj, "answer", "")?));
    Ok(messages)
}

fn array_field(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, Rejection> {
    match obj.remove(key) {
        Some(Value::Array(a)) => Ok(a),
        None | Some(Value::Null) => Err(Rejection::new(Reason::MissingField, format!("{key} is missing"))),
        Some(other) => Err(Rejection::new(
            Reason::MissingField,
            format!("{key} is a {}, not an array", kind(&other)),
        )),
    }
}

fn sharegpt_messages(obj: &mut Map<String, Value>) -> Result<Vec<Message>, Rejection> {
    let turns = array_field(obj, "conversations")?;
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if let Some(Value::String(system)) = obj.remove("system") {
        messages.push(Message::system(system));
    }
    for (i, turn) in turns.into_iter().enumerate() {
        let at = format!("conversations[{i}].");
        let Value::Object(mut t) = turn else {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("conversations[{i}] is not an object"),
            ));
        };
        let from = string_field(&mut t, "from", &at)?;
        let value = match t.remove("value") {
            Some(Value::String(s)) => s,
            Some(Value::Null) | None if t.contains_key("tool_calls") => String::new(),
            Some(Value::Null) | None => {
                return Err(Rejection::new(Reason::MissingField, format!("{at}value is missing")));
            }
            Some(other) => other.to_string(),
        };
        let msg = match from.as_str() {
            "system" => Message::system(value),
            "human" | "user" => Message::user(value),
            "gpt" | "assistant" => {
                let calls = tool_calls_of(t.remove("tool_calls"), &at)?;
                Message {
                    role: Role::Assistant,
                    content: value,
                    tool_calls: calls,
                    tool_name: None,
                }
            }
            // Some exporters put the call itself in the value of a `function_call` turn.
            "function_call" => {
                let call: Value = serde_json::from_str(&value).map_err(|e| {
                    Rejection::new(
                        Reason::InvalidToolArguments,
                        format!("{at}value is not a JSON tool call: {e}"),
                    )
                })?;
                Message::tool_calls(tool_calls_of(Some(Value::Array(vec![call])), &at)?)
            }
            "tool" | "observation" | "function" | "ipython" => {
                let name = match t.remove("name") {
                    Some(Value::String(n)) => Some(n),
                    _ => None,
                };
                Message {
                    role: Role::Tool,
                    content: value,
                    tool_calls: Vec::new(),
                    tool_name: name,
                }
            }
            other => {
                return Err(Rejection::new(
                    Reason::WrongRole,
                    format!("{at}from is {other:?}; expected system, human, gpt or tool"),
                ));
            }
        };
        messages.push(msg);
    }
    Ok(messages)
}

fn openai_messages(obj: &mut Map<String, Value>) -> Result<Vec<Message>, Rejection> {
    let raw = array_field(obj, "messages")?;
    let mut messages = Vec::with_capacity(raw.len());
    // tool_call_id → function name, so a `tool` message can say which tool produced it.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let at = format!("messages[{i}].");
        let Value::Object(mut m) = m else {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("messages[{i}] is not an object"),
            ));
        };
        let role = string_field(&mut m, "role", &at)?;
        let content = match m.remove("content") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => String::new(),
            // Content parts: keep the text ones, in order.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(other) => {
                return Err(Rejection::new(
                    Reason::MissingField,
                    format!("{at}content is a {}", kind(&other)),
                ));
            }
        };
        let msg = match role.as_str() {
            "system" | "developer" => Message::system(content),
            "user" => Message::user(content),
            "assistant" => {
                let mut calls = Vec::new();
                if let Some(Value::Array(raw_calls)) = m.remove("tool_calls") {
                    for (j, c) in raw_calls.into_iter().enumerate() {
                        let id = c.get("id").and_then(Value::as_str).map(str::to_string);
                        let f = c.get("function").cloned().unwrap_or(c);
                        let call = tool_call_of(f, &format!("{at}tool_calls[{j}]."))?;
                        if let Some(id) = id {
                            call_names.push((id, call.name.clone()));
                        }
                        calls.push(call);
                    }
                }
                Message {
                    role: Role::Assistant,
                    content,
                    tool_calls: calls,
                    tool_name: None,
                }
            }
            "tool" | "function" | "ipython" => {
                let name = m.get("name").and_then(Value::as_str).map(str::to_string).or_else(|| {
                    let id = m.get("tool_call_id").and_then(Value::as_str)?;
                    call_names.iter().find(|(k, _)| k == id).map(|(_, n)| n.clone())
                });
                Message {
                    role: Role::Tool,
                    content,
                    tool_calls: Vec::new(),
                    tool_name: name,
                }
            }
            other => {
                return Err(Rejection::new(
                    Reason::WrongRole,
                    format!("{at}role is {other:?}; expected system, user, assistant or tool"),
                ));
            }
        };
        messages.push(msg);
    }
    Ok(messages)
}

fn tool_calls_of(v: Option<Value>, at: &str) -> Result<Vec<ToolCall>, Rejection> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(calls)) => calls
            .into_iter()
            .enumerate()
            .map(|(j, c)| {
                let f = match c.get("function") {
                    Some(f) => f.clone(),
                    None => c,
                };
                tool_call_of(f, &format!("{at}tool_calls[{j}]."))
            })
            .collect(),
        Some(other) => Err(Rejection::new(
            Reason::MissingField,
            format!("{at}tool_calls is a {}", kind(&other)),
        )),
    }
}

/// `{name, arguments}`; string arguments (OpenAI's encoding) are decoded so they can be checked and written
/// as objects. Undecodable ones stay strings and fail validation with the reason.
fn tool_call_of(f: Value, at: &str) -> Result<ToolCall, Rejection> {
    let Value::Object(mut f) = f else {
        return Err(Rejection::new(Reason::MissingField, format!("{at} is not an object")));
    };
    let name = string_field(&mut f, "name", at)?;
    let arguments = match f.remove("arguments").or_else(|| f.remove("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Some(v) => v,
    };
    Ok(ToolCall { name, arguments })
}

/// Normalizes declared tools to OpenAI's `{"type":"function","function":{…}}`; ShareGPT files often keep
/// them as one JSON-encoded string.
fn tools_of(v: Option<Value>) -> Result<Vec<Value>, Rejection> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(&s)
            .map_err(|e| Rejection::new(Reason::MalformedJson, format!("tools is a string but not JSON: {e}")))?,
        Some(v) => v,
    };
    let Value::Array(list) = list else {
        return Err(Rejection::new(Reason::MissingField, "tools is not an array"));
    };
    Ok(list
        .into_iter()
        .map(|t| {
            if t.get("function").is_some() {
                t
            } else {
                serde_json::json!({"type": "function", "function": t})
            }
        })
        .collect())
}
