//! Shared by integration tests: where the fixtures are, and reading the reference values.
#![allow(dead_code)]

use std::path::PathBuf;

/// The fixture folder (`$FIREWEAVE_FIXTURES`, default `~/.cache/fireweave-ai/fixtures`). Panics with the command
/// that builds it: a missing fixture is a broken set-up, never a reason to skip.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("FIREWEAVE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/fireweave-ai/fixtures")
        });
    assert!(
        dir.join(".stamp").exists(),
        "test fixtures missing in {} — run ./scripts/test.sh (or: source scripts/env.sh && python tests/fixtures/make_fixtures.py)",
        dir.display()
    );
    dir
}

pub const CHECKPOINTS: [&str; 3] = ["tiny-llama31", "tiny-llama31-gqa-tied", "smollm2-135m"];

/// `reference/<name>.json`: chat cases rendered and tokenized by `transformers`.
pub fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join("reference").join(format!("{name}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
