//! The `tokenizer.*` section of a GGUF file, from a Hugging Face BPE `tokenizer.json` plus
//! `tokenizer_config.json` / `chat_template.jinja`, laid out the way llama.cpp's loader expects.

use super::file::{Array, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// llama.cpp's pre-tokenizer for Llama 3: this split regex followed by byte-level mapping.
const LLAMA3_SPLIT: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Name llama.cpp knows for the pre-tokenizer a `tokenizer.json` describes, from its structure (the
/// converter hashes a tokenization instead, which needs a tokenizer implementation we do not carry).
pub fn detect_pre_tokenizer(pre: &Json) -> Option<&'static str> {
    let kind = pre.get("type").and_then(Json::as_str)?;
    let byte_level = |p: &Json| p.get("type").and_then(Json::as_str) == Some("ByteLevel");
    match kind {
        "Sequence" => {
            let parts = pre.get("pretokenizers").and_then(Json::as_array)?;
            match parts.as_slice() {
                [split, bl] if byte_level(bl) => {
                    let t = split.get("type").and_then(Json::as_str);
                    let regex = split.pointer("/pattern/Regex").and_then(Json::as_str);
                    let individual = split.get("individual_digits").and_then(Json::as_bool);
                    if t == Some("Split") && regex == Some(LLAMA3_SPLIT) {
                        Some("llama-bpe")
                    } else if t == Some("Digits") && individual == Some(true) {
                        Some("smollm")
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        // Plain byte-level with its built-in regex is GPT-2's pre-tokenizer, which llama.cpp spells "gpt-2".
        "ByteLevel" if pre.get("use_regex").and_then(Json::as_bool) != Some(false) => Some("gpt-2"),
        _ => None,
    }
}

fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// A special token named in tokenizer_config.json, either as text or as an AddedToken object.
fn config_token(cfg: &Json, key: &str) -> Option<String> {
    let v = cfg.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
        .map(str::to_owned)
}

fn read_json(path: &Path) -> Result<Json, TokenizerError> {
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| TokenizerError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Pure part: everything from parsed JSON. `template_file` is the content of chat_template.jinja if present.
pub fn tokenizer_kv(
    tok: &Json,
    cfg: &Json,
    template_file: Option<String>,
    vocab_size: usize,
    path: &Path,
) -> Result<Vec<(String, Value)>, TokenizerError> {
    let bad = |message: String| TokenizerError::Invalid {
        path: path.to_owned(),
        message,
    };
    let model = tok.get("model").ok_or_else(|| bad("no \"model\" section".into()))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(bad(format!(
            "model.type is {}, only BPE tokenizers are supported",
            model.get("type").unwrap_or(&Json::Null)
        )));
    }
    let pre_json = tok.get("pre_tokenizer").unwrap_or(&Json::Null);
    let pre = detect_pre_tokenizer(pre_json).ok_or_else(|| {
        bad(format!(
            "pre_tokenizer not recognised as one llama.cpp supports (llama-bpe, smollm, gpt-2): {}",
            {
                let s = pre_json.to_string();
                s.chars().take(200).collect::<String>()
            }
        ))
    })?;
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    let mut by_id: HashMap<usize, String> = HashMap::with_capacity(vocab.len());
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(format!("model.vocab[{text:?}] is not an id")))? as usize;
        by_id.insert(id, text.clone());
    }
    // id -> special flag, for added tokens.
    let mut added: HashMap<usize, bool> = HashMap::new();
    let mut added_by_text: HashMap<String, usize> = HashMap::new();
    for (i, t) in tok
        .get("added_tokens")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = t
            .get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| bad(format!("added_tokens[{i}] has no id")))? as usize;
        let content = t
            .get("content")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("added_tokens[{i}] has no content")))?;
        by_id.insert(id, content.to_owned());
        added.insert(id, t.get("special").and_then(Json::as_bool).unwrap_or(false));
        added_by_text.insert(content.to_owned(), id);
    }
    if let Some(max) = by_id.keys().max()
        && *max >= vocab_size
    {
        return Err(bad(format!(
            "token id {max} is outside config.json's vocab_size {vocab_size}"
        )));
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(USER_DEFINED);
            }
            Some(text) => {
                let ty = match added.get(&i) {
                    Some(true) => CONTROL,
                    Some(false) if looks_special(text) => CONTROL,
                    Some(false) => USER_DEFINED,
                    None => NORMAL,
                };
                tokens.push(text.clone());
                types.push(ty);
            }
        }
    }
    let mut merges = Vec::new();
    for (i, m) in model
        .get("merges")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(s) = m.as_str() {
            merges.push(s.to_owned());
        } else if let Some(parts) = m.as_array() {
            let parts: Option<Vec<String>> = parts
                .iter()
                .map(|p| p.as_str().map(|s| s.replace(' ', "\u{0120}")))
                .collect();
            merges.push(
                parts
                    .ok_or_else(|| bad(format!("model.merges[{i}] is not a pair of strings")))?
                    .join(" "),
            );
        } else {
            return Err(bad(format!("model.merges[{i}] is neither a string nor a pair")));
        }
    }
    let lookup = |key: &str| -> Option<u32> {
        let text = config_token(cfg, key)?;
        added_by_text
            .get(&text)
            .copied()
            .or_else(|| vocab.get(&text).and_then(Json::as_u64).map(|v| v as usize))
            .map(|v| v as u32)
    };
    // add_bos: the post-processor's single-sequence template starts with the BOS token; an explicit
    // add_bos_token in tokenizer_config.json wins.
    let bos_text = config_token(cfg, "bos_token");
    let post = tok.get("post_processor").unwrap_or(&Json::Null);
    let processors: Vec<&Json> = match post.get("processors").and_then(Json::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![post],
    };
    let mut add_bos = processors.iter().any(|p| {
        p.get("type").and_then(Json::as_str) == Some("TemplateProcessing")
            && p.pointer("/single/0/SpecialToken/id")
                .and_then(Json::as_str)
                .is_some_and(|id| Some(id) == bos_text.as_deref())
    });
    if let Some(b) = cfg.get("add_bos_token").and_then(Json::as_bool) {
        add_bos = b;
    }
    let template = match cfg.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Json::as_str))
            .map(str::to_owned),
        _ => None,
    }
    .or(template_file);

    let mut kv: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges".into(), Value::Array(Array::String(merges))),
    ];
    for (key, cfg_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token"),
        ("tokenizer.ggml.eos_token_id", "eos_token"),
        ("tokenizer.ggml.unknown_token_id", "unk_token"),
        ("tokenizer.ggml.padding_token_id", "pad_token"),
    ] {
        if let Some(id) = lookup(cfg_key) {
            kv.push((key.into(), Value::U32(id)));
        }
    }
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    if let Some(t) = template {
        kv.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(kv)
}

/// Reads the tokenizer files of a checkpoint folder.
pub fn tokenizer_metadata(dir: &Path, vocab_size: usize) -> Result<Vec<(String, Value)>, TokenizerError> {
    let tok_path = dir.join("tokenizer.json");
    let tok = read_json(&tok_path)?;
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg = if cfg_path.exists() {
        read_json(&cfg_path)?
    } else {
        Json::Null
    };
    let tpl_path = dir.join("chat_template.jinja");
    let template_file = if tpl_path.exists() {
        Some(std::fs::read_to_string(&tpl_path).map_err(|source| TokenizerError::Io { path: tpl_path, source })?)
    } else {
        None
    };
    tokenizer_kv(&tok, &cfg, template_file, vocab_size, &tok_path)
}
