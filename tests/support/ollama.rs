//! The prompt Ollama's `/api/chat` sends to the model, rendered by Ollama's own Go code (tests/ollama/render at
//! the release pinned in tests/ollama/go.mod), never by an imitation. Include with
//! `#[path = "support/ollama.rs"] mod ollama;`.
//!
//! The binary is `$FIREWEAVE_OLLAMA_RENDER` (scripts/test.sh sets it) or, when that is unset, whatever
//! scripts/ollama-render.sh builds or finds in the cache, so `cargo test` alone works on a provisioned machine.
//!
//! A case is an `/api/chat` request body: `{"messages": [...], "tools": [...]}` in Ollama's JSON shapes
//! (`api.Message`: role, content, `tool_calls: [{"function": {"name", "arguments": {object}}}]`, `tool_name`;
//! `api.Tool`), optionally `think`. The prompt is the text before tokenization: Ollama's llama.cpp runner then
//! tokenizes it with special tokens parsed and adds BOS itself when the GGUF's `tokenizer.ggml.add_bos_token`
//! says so, even when the text already starts with one.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The prompts Ollama renders from a Modelfile's `TEMPLATE` and `SYSTEM` (their text between the quotes; an
/// empty `system` is a Modelfile without SYSTEM), one per case. Panics with Ollama's message when it would
/// refuse the template or a request.
pub fn ollama_prompts(template: &str, system: &str, cases: &[Value]) -> Vec<String> {
    ollama_render(&json!({"template": template, "system": system, "cases": cases})).unwrap_or_else(|e| panic!("{e}"))
}

/// The prompts Ollama renders for a whole Modelfile as `ollama create -f` reads it (Ollama's own Modelfile
/// parser: TEMPLATE, SYSTEM and MESSAGE lines), one per case.
pub fn ollama_modelfile_prompts(modelfile: &str, cases: &[Value]) -> Vec<String> {
    ollama_render(&json!({"modelfile": modelfile, "cases": cases})).unwrap_or_else(|e| panic!("{e}"))
}

/// One run of the renderer on `input` (`{"template", "system", "cases"}` or `{"modelfile", "cases"}`): the
/// prompts, or the renderer's message when Ollama would refuse the input.
pub fn ollama_render(input: &Value) -> Result<Vec<String>, String> {
    let bin = renderer();
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let body = serde_json::to_vec(input).expect("input serializes");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from a thread so that a renderer that answers early cannot block us on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    // A renderer that fails on bad input may exit before reading it all; its stderr says why.
    let _ = writer.join().expect("stdin writer");
    if !out.status.success() {
        return Err(format!(
            "{} ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: unreadable answer ({e}): {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let prompts: Vec<String> = answer["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no prompts in {answer}", bin.display()))
        .iter()
        .map(|p| p.as_str().expect("a prompt is a string").to_owned())
        .collect();
    let cases = input["cases"].as_array().map_or(0, Vec::len);
    assert_eq!(prompts.len(), cases, "{}: one prompt per case", bin.display());
    Ok(prompts)
}

/// The Ollama release the renderer is built from (tests/ollama/go.mod), e.g. `v0.12.6`.
pub fn pinned_version() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ollama/go.mod");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("require")
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .find_map(|w| (w.len() >= 2 && w[0] == "github.com/ollama/ollama").then(|| w[1].to_owned()))
        .unwrap_or_else(|| panic!("{}: no github.com/ollama/ollama requirement", path.display()))
}

/// The renderer binary, found or built once per test process.
fn renderer() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FIREWEAVE_OLLAMA_RENDER").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(format!("{root}/scripts/ollama-render.sh"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("bash scripts/ollama-render.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/ollama-render.sh failed ({}): it needs Go (scripts/provision.sh) and the module proxy or a warm cache",
            out.status
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim_end())
    })
}
