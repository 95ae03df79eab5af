//! The server's request bodies — `/api/chat`, `/api/generate`, `/api/embed`, `/v1/chat/completions` — through
//! everything the handlers do before a model is involved: body parsing (`api::parse_body`), message
//! validation (any roles, content of any type, tool calls with any arguments, image fields), option mapping
//! (Ollama options over a model's defaults, OpenAI's sampling fields, `stop`, `response_format`,
//! `logit_bias`, numbers out of range), the `format` schema through llama.cpp's JSON-schema-to-grammar
//! converter, and prompt rendering with every chat template; then the response side for the declared tools
//! (held-back streaming, tool-call parsing, stop strings, UTF-8 reassembly) on the request's own text. A bad
//! request is an error (the handlers answer 400 with it); nothing may panic or abort.
//!
//! Input: one selector byte (endpoint, template, model system prompt), then the request body.
#![no_main]

mod templates;

use fireweave_ai::chat::{Message, server_prompt};
use fireweave_ai::serve::api::{
    ChatRequest, EmbedRequest, Flavor, GenerateRequest, OpenAiChatRequest, Responder, parse_body, to_messages,
};
use fireweave_ai::serve::options::Options;
use fireweave_ai::serve::text::{StopFilter, Utf8Stream, parse_tool_calls};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// What `routes::grammar_for` does with a request's `format`: "json" is any object, an object is a schema.
fn grammar(format: Option<&Value>) -> Result<Option<String>, String> {
    let schema = match format {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s == "json" => json!({"type": "object"}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => return Err(format!("invalid format: {other}")),
    };
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A model's defaults, as a ModelServing's parameters would give them.
fn model_defaults() -> Options {
    serde_json::from_value(json!({"temperature": 0.2, "num_ctx": 4096, "stop": ["<|eot_id|>"], "top_k": 40}))
        .expect("options")
}

/// Sampling settings as the engine would receive them; the response side on the request's own text.
fn respond(flavor: Flavor, options: &Options, tools: &[Value], text: &str) {
    let sampling = options.over(&model_defaults()).resolve();
    let _ = options.unknown_keys();
    let mut stops = StopFilter::new(sampling.stop.clone());
    let mut utf8 = Utf8Stream::default();
    let mut responder = Responder::new(flavor, "m", tools, "chatcmpl-fuzz".into());
    // The text in uneven pieces, split inside UTF-8 sequences as tokens split them.
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut step = 1;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        let piece = utf8.push(&bytes[at..end]);
        let check = stops.push(&piece);
        let _ = responder.piece(&check.emit);
        if check.stopped {
            break;
        }
        at = end;
        step = step % 7 + 1;
    }
    let _ = responder.piece(&stops.finish());
    let _ = utf8.finish();
    let names: Vec<String> = tools
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let _ = parse_tool_calls(text, &names);
    let _ = parse_tool_calls(text, &[]);
}

/// The prompt as `routes::render_chat` builds it: the model's system prompt first unless the request has one.
fn render(sel: u8, messages: &[Message], tools: &[Value]) {
    let all = templates::all();
    let system = (sel & 0x80 != 0).then_some("You are a network security expert.");
    let _ = server_prompt(&all[usize::from(sel >> 2) % all.len()], system, messages, tools);
}

fn last_text(messages: &[Message]) -> &str {
    messages.last().map_or("", |m| m.content.as_str())
}

// Compiled before the first input, outside its timeout.
fuzz_target!(init: {
    templates::all();
}, |data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    match sel & 3 {
        0 => {
            let Ok(req) = parse_body::<ChatRequest>(body) else { return };
            let Ok(messages) = to_messages(&req.messages) else { return };
            let _ = grammar(req.format.as_ref());
            render(sel, &messages, &req.tools);
            respond(Flavor::Chat, &req.options.unwrap_or_default(), &req.tools, last_text(&messages));
        }
        1 => {
            let Ok(req) = parse_body::<GenerateRequest>(body) else { return };
            let _ = grammar(req.format.as_ref());
            let mut messages = Vec::new();
            if let Some(system) = req.system.clone() {
                messages.push(Message::system(system));
            }
            messages.push(Message::user(req.prompt.clone()));
            if !req.raw {
                render(sel, &messages, &[]);
            }
            respond(Flavor::Generate, &req.options.unwrap_or_default(), &[], &req.prompt);
        }
        2 => {
            let Ok(req) = parse_body::<EmbedRequest>(body) else { return };
            let _inputs: Result<Vec<&str>, ()> = match &req.input {
                Value::String(s) => Ok(vec![s.as_str()]),
                Value::Array(items) => items.iter().map(|v| v.as_str().ok_or(())).collect(),
                _ => Err(()),
            };
        }
        _ => {
            let Ok(req) = parse_body::<OpenAiChatRequest>(body) else { return };
            let Ok(messages) = to_messages(&req.messages) else { return };
            let Ok(options) = req.options() else { return };
            let Ok(format) = req.format() else { return };
            let _ = grammar(format.as_ref());
            if let Ok(bias) = req.logit_bias() {
                assert!(bias.iter().all(|(_, b)| !b.is_nan() && *b <= 100.0));
            }
            render(sel, &messages, &req.tools);
            respond(Flavor::OpenAi, &options, &req.tools, last_text(&messages));
        }
    }
});
