//! The Ollama contract suite (tests/serve_contract.py, official `ollama` client) against two real servers
//! loaded with SmolLM2, then a graceful shutdown with a request in flight.
#![cfg(feature = "serve")]

#[path = "serve/common.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// ChatML as SmolLM2 ships it, plus tools, tool calls and tool results (the shipped template has none), to
/// exercise the template override of the config file.
const TOOLS_TEMPLATE: &str = r#"{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}
{% endif %}You can call functions. To call one, answer only with {"name": function name, "parameters": arguments}.
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% elif messages[0]['role'] != 'system' %}<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message['role'] == 'system' %}{% if not tools %}<|im_start|>system
{{ message['content'] }}<|im_end|>
{% endif %}
{%- elif message['role'] == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}{"name": "{{ call.function.name }}", "parameters": {{ call.function.arguments | tojson }}}{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

#[test]
fn ollama_client_contract_suite() {
    let gguf = common::smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.yaml");
    let yaml = serde_yaml::to_string(&serde_json::json!({"models": [{
        "name": "smol", "path": gguf, "template": TOOLS_TEMPLATE,
        // num_ctx here (no --num-ctx flag) sizes the context: tags_show_ps checks /api/ps reports 1024.
        "parameters": {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "num_ctx": 1024}
    }]}))
    .unwrap();
    std::fs::write(&config, yaml).unwrap();
    let main = common::Server::start(&["--config", config.to_str().unwrap(), "--parallel", "4"]);
    let model_arg = format!("smol={}", gguf.display());
    let busy = common::Server::start(&[
        "--model",
        &model_arg,
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "--num-ctx",
        "2048",
    ]);
    let status = Command::new("python")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_contract.py"),
            "--host",
            &main.url(),
            "--busy-host",
            &busy.url(),
        ])
        .status()
        .expect("running python tests/serve_contract.py (the venv must be on PATH: scripts/test.sh)");
    assert!(status.success(), "contract suite failed (see its output above)");
    graceful_shutdown_finishes_in_flight(main);
}

fn graceful_shutdown_finishes_in_flight(mut server: common::Server) {
    let body = r#"{"model":"smol","prompt":"Count from one to fifty in words.","stream":true,"options":{"temperature":0,"num_predict":48}}"#;
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut lines = Vec::new();
    let mut line = String::new();
    // Wait for the first generated piece so the request is surely in flight, then ask the server to stop.
    while reader.read_line(&mut line).unwrap() > 0 {
        let done = line.contains("\"response\"");
        lines.push(std::mem::take(&mut line));
        if done {
            break;
        }
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(std::mem::take(&mut line));
    }
    let last = lines
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .cloned()
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last.trim()).unwrap_or_else(|e| panic!("{e}: {last:?}"));
    assert_eq!(v["done"], true, "in-flight request must finish during shutdown: {last}");
    assert_eq!(v["eval_count"], 48);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exit status after SIGTERM: {status}");
}
