//! One dataset record, in each input format, through everything a record meets in the dataset worker: the
//! loader's per-record path (size limit, UTF-8, JSON, shape detection and conversion), validation (roles, order,
//! placeholders, tool calls against declared schemas), scoring, the dedup text and fingerprint, curation of the
//! record beside an exact copy of itself, and its OpenAI-messages output line. Nothing may panic (overflow
//! checks and debug assertions are on), and the invariants below must hold.
//!
//! Input: one selector byte (format, topic, filters), then the record's bytes.
#![no_main]

use fireweave_ai::api::dataset::{SourceFormat, default_tools};
use fireweave_ai::dataset::curate::{self, Config, Fate};
use fireweave_ai::dataset::load::{self, Item, SourceOptions};
use fireweave_ai::dataset::validate::{self, Rules};
use fireweave_ai::dataset::{dedup, output, score};
use libfuzzer_sys::fuzz_target;

const FORMATS: [SourceFormat; 4] = [
    SourceFormat::Auto,
    SourceFormat::Qa,
    SourceFormat::Sharegpt,
    SourceFormat::Openai,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, record)) = data.split_first() else { return };
    let opts = SourceOptions {
        format: FORMATS[usize::from(sel & 3)],
        topic: (sel & 4 != 0).then(|| "fuzz".to_string()),
        max_record_bytes: 1 << 20,
    };
    let tools = default_tools();
    let rules = Rules {
        min_answer_chars: if sel & 8 != 0 { 0 } else { 20 },
        reject_placeholders: sel & 16 != 0,
        tools: tools.clone(),
    };
    // A `.json` file holding one object is one record; an array is one record per element.
    let items = load::parse_bytes(record, "record.json", &opts);
    for item in &items {
        let lines = 1 + record.iter().filter(|&&b| b == b'\n').count();
        assert!((1..=lines).contains(&item.origin.line), "{}", item.origin);
        let Ok(conv) = &item.parsed else {
            let r = item.parsed.as_ref().unwrap_err();
            assert!(!r.detail.is_empty(), "a rejection says why: {r:?}");
            continue;
        };
        let _ = validate::validate(conv, &rules);
        let s = score::score(conv);
        assert!(s.total <= 100, "{s:?}");
        for (part, max) in [
            (s.length, score::LENGTH_MAX),
            (s.code_blocks, score::CODE_MAX),
            (s.cli_config, score::CLI_MAX),
            (s.technical_depth, score::DEPTH_MAX),
            (s.formatting, score::FORMAT_MAX),
            (s.tool_use, score::TOOL_MAX),
            (s.repetition_penalty, score::REPETITION_MAX),
            (s.truncation_penalty, score::TRUNCATION),
        ] {
            assert!(part.is_finite() && (0.0..=max).contains(&part), "{s:?}");
        }
        let text = curate::dedup_text(conv);
        let a = dedup::fingerprint(&text);
        let b = dedup::fingerprint(&text);
        assert!(a.exact == b.exact && a.minhash == b.minhash && a.facts == b.facts);
        let _ = output::openai_line(conv, &tools);
        for m in &conv.messages {
            let _ = validate::find_placeholder(&m.content);
        }
    }
    // The record beside an exact copy of itself: the copy is never kept twice, and every record has one fate.
    let twice: Vec<Item> = items.iter().chain(items.iter()).cloned().collect();
    let cfg = Config {
        rules,
        min_score: if sel & 32 != 0 { 0 } else { 50 },
        exact: true,
        near: if sel & 64 != 0 { 0.0 } else { 0.8 },
        eval_fraction: if sel & 128 != 0 { 0.5 } else { 0.0 },
        seed: 3407,
    };
    let outcome = curate::curate(&twice, &cfg).expect("the count invariant holds");
    let st = &outcome.stats;
    assert_eq!(st.input, twice.len());
    assert_eq!(st.input, st.kept + st.rejected + st.duplicates);
    let n = items.len();
    for i in 0..n {
        let kept = |f: &Fate| matches!(f, Fate::Train | Fate::Eval);
        assert!(
            !(kept(&outcome.fates[i]) && kept(&outcome.fates[i + n])),
            "record {i} kept twice: {:?}",
            outcome.fates[i]
        );
    }
});
