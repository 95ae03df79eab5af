//! The chat-template renderer with hostile conversations and tool schemas: every template the crate ships
//! (`src/chat/templates/*.jinja`) and those of the test fixtures' models (`$FIREWEAVE_FIXTURES`, default
//! `~/.cache/fireweave-ai/fixtures`), rendered with any messages (any content, tool calls with any arguments,
//! tool names), any tool definitions, with and without the generation prompt; and Python-style `tojson` of
//! any JSON value at any indent. Rendering may fail with an error; it may not panic.
//!
//! Input: one selector byte (template, generation prompt, indent), then `{"messages": [...], "tools": [...]}`.
#![no_main]

mod templates;

use fireweave_ai::chat::{Message, python_json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

// Compiled before the first input, outside its timeout.
fuzz_target!(init: {
    templates::all();
}, |data: &[u8]| {
    let templates = templates::all();
    let Some((&sel, body)) = data.split_first() else { return };
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return };
    let indent = usize::from(sel >> 5);
    let _ = python_json(&v, Some(indent));
    let _ = python_json(&v, None);
    let messages: Vec<Message> = match v.get("messages").cloned().map(serde_json::from_value) {
        Some(Ok(m)) => m,
        _ => return,
    };
    let tools: Vec<Value> = match v.get("tools") {
        Some(Value::Array(t)) => t.clone(),
        _ => Vec::new(),
    };
    let t = &templates[usize::from(sel & 15) % templates.len()];
    let _ = t.render(&messages, &tools, sel & 16 != 0);
});
