//! The trainer's data encoding on any JSON line: `train::data::parse_record` (ShareGPT `conversations` or
//! OpenAI `messages`, tools, tool calls with string or object arguments), then the chat template, the
//! assistant spans, the tokenizer, the loss mask, truncation to a context length and the shifted targets, with
//! the templates and tokenizers of the test fixtures' models. Nothing may panic, and the mask must line up: one
//! label per token, each either ignored or the token itself, turn ends inside the example, nothing longer than
//! the context after truncation.
//!
//! Input: one selector byte (model, context length, a served system prompt), then the line.
#![no_main]

mod templates;

use std::sync::OnceLock;

use fireweave_ai::chat::ChatTemplate;
use fireweave_ai::train::data::{self, Encoder, Example, IGNORE};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Each fixture model with both a chat template and a tokenizer.json.
fn models() -> &'static [(ChatTemplate, tokenizers::Tokenizer)] {
    static M: OnceLock<Vec<(ChatTemplate, tokenizers::Tokenizer)>> = OnceLock::new();
    M.get_or_init(|| {
        let out: Vec<_> = templates::model_dirs()
            .iter()
            .filter_map(|d| {
                let t = ChatTemplate::from_model_dir(d).ok()?;
                let tok = tokenizers::Tokenizer::from_file(d.join("tokenizer.json")).ok()?;
                Some((t, tok))
            })
            .collect();
        assert!(!out.is_empty(), "no fixture model with a chat template and tokenizer.json");
        eprintln!("{} fixture models", out.len());
        out
    })
}

const MAX_LEN: [usize; 4] = [4096, 7, 32, 128];

// Loaded before the first input: under ASan, reading the tokenizers takes longer than one input's timeout.
fuzz_target!(init: {
    models();
}, |data: &[u8]| {
    let models = models();
    let Some((&sel, line)) = data.split_first() else { return };
    let Ok(value) = serde_json::from_slice::<Value>(line) else { return };
    let Ok(conv) = data::parse_record(&value) else { return };
    let (template, tokenizer) = &models[usize::from((sel >> 2) & 0x1F) % models.len()];
    let max_len = MAX_LEN[usize::from(sel & 3)];
    let encoder = Encoder {
        template,
        tokenizer,
        max_len,
        system: if sel & 0x80 != 0 { "You are a network security expert." } else { "" },
    };
    let Ok(labeled) = encoder.label(&conv, 0) else { return };
    let n = labeled.ids.len();
    assert_eq!(labeled.labels.len(), n);
    for (id, label) in labeled.ids.iter().zip(&labeled.labels) {
        assert!(*label == IGNORE || label == id, "label {label} on token {id}");
    }
    let assistant_turns = conv
        .messages
        .iter()
        .filter(|m| m.role == fireweave_ai::chat::Role::Assistant)
        .count();
    assert_eq!(labeled.turn_ends.len(), assistant_turns);
    assert!(labeled.turn_ends.iter().all(|&e| e <= n));
    let (cut, _) = data::truncate(labeled.clone(), max_len);
    assert!(cut.ids.len() <= max_len, "{} tokens after truncating to {max_len}", cut.ids.len());
    assert_eq!(cut.labels.len(), cut.ids.len());
    assert_eq!(&labeled.ids[..cut.ids.len()], &cut.ids[..]);
    let ex = Example::from_labeled(&cut);
    assert_eq!(ex.targets.len(), ex.ids.len());
    assert_eq!(Example::from_labels(ex.ids.clone(), ex.labels()), ex);
    let (ids, targets, b, s) = data::collate(&[&ex, &ex]);
    assert_eq!((b, s as usize), (2, ex.ids.len()));
    assert_eq!(ids.len(), targets.len());
    // The whole encoding step over the one example.
    let _ = encoder.encode_all(std::slice::from_ref(&conv));
});
