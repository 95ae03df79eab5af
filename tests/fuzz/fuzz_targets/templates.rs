//! The chat templates the targets render with: every template the crate ships (`src/chat/templates/*.jinja`)
//! and those of the test fixtures' models (`$FIREWEAVE_FIXTURES`, default `~/.cache/fireweave-ai/fixtures`).
// Each target uses the part it needs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use fireweave_ai::chat::ChatTemplate;

/// The test fixtures' model folders, in name order.
pub fn model_dirs() -> Vec<PathBuf> {
    let fixtures = std::env::var_os("FIREWEAVE_FIXTURES").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fireweave-ai/fixtures"),
        PathBuf::from,
    );
    sorted_entries(&fixtures)
}

fn sorted_entries(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

pub fn all() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::new();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../src/chat/templates");
        for f in sorted_entries(&shipped).iter().filter(|f| f.extension().is_some_and(|e| e == "jinja")) {
            let source = std::fs::read_to_string(f).expect("template");
            out.push(ChatTemplate::new(&source, "<|begin_of_text|>", "<|eot_id|>").expect("shipped template compiles"));
        }
        for d in model_dirs() {
            if let Ok(t) = ChatTemplate::from_model_dir(&d) {
                out.push(t);
            }
        }
        assert!(!out.is_empty(), "no chat templates found");
        eprintln!("{} chat templates", out.len());
        out
    })
}
