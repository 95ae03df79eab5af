//! A whole dataset file through the loader (a JSON array or object, JSON Lines; truncated, binary and
//! oversized records), curation and the artifact writer, as `fireweave-ai dataset` runs it. The file never
//! fails the run: every record ends up kept, rejected with a reason or a duplicate (input = kept + rejected +
//! duplicates), and rejected.jsonl names each dropped record's file and line.
//!
//! Input: one selector byte (file extension, record size limit, format, quality threshold, whether to write the
//! artifact: both top bits), then the file's bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use fireweave_ai::api::dataset::{SourceFormat, default_tools};
use fireweave_ai::dataset::curate::{self, Config};
use fireweave_ai::dataset::load::{self, SourceOptions};
use fireweave_ai::dataset::output;
use fireweave_ai::dataset::validate::Rules;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NAMES: [&str; 4] = ["data.json", "data.jsonl", "data.ndjson", "data.txt"];
const LIMITS: [usize; 4] = [1 << 20, 64, 512, 4096];
const FORMATS: [SourceFormat; 4] = [
    SourceFormat::Auto,
    SourceFormat::Auto,
    SourceFormat::Sharegpt,
    SourceFormat::Openai,
];

/// This process's scratch folder for the artifact writer (removed after every input).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("fireweave-fuzz-dataset-file-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, file)) = data.split_first() else { return };
    let name = NAMES[usize::from(sel & 3)];
    let opts = SourceOptions {
        format: FORMATS[usize::from((sel >> 4) & 3)],
        topic: None,
        max_record_bytes: LIMITS[usize::from((sel >> 2) & 3)],
    };
    let items = load::parse_bytes(file, name, &opts);
    let lines = 1 + file.iter().filter(|&&b| b == b'\n').count();
    for item in &items {
        assert_eq!(&*item.origin.file, name);
        assert!((1..=lines).contains(&item.origin.line), "{} of {lines} lines", item.origin);
        if let Err(r) = &item.parsed {
            assert!(!r.detail.is_empty(), "{r:?}");
            if let Some(raw) = &r.raw {
                assert!(raw.len() <= 64 << 10);
            }
        }
    }
    let tools = default_tools();
    let cfg = Config {
        rules: Rules {
            min_answer_chars: 20,
            reject_placeholders: true,
            tools: tools.clone(),
        },
        min_score: if sel & 64 != 0 { 0 } else { 50 },
        exact: true,
        near: 0.8,
        eval_fraction: 0.2,
        seed: 3407,
    };
    let outcome = curate::curate(&items, &cfg).expect("the count invariant holds");
    let s = &outcome.stats;
    assert_eq!(s.input, items.len());
    assert_eq!(s.input, s.kept + s.rejected + s.duplicates);

    // The artifact (for a quarter of the inputs: writing and hashing it is most of an execution's time): one
    // line per record across train, eval and rejected; every rejected line has a reason and the record's file
    // and line.
    if sel & 0xC0 != 0xC0 {
        return;
    }
    let parent = scratch();
    let written = output::write(parent, &items, &outcome, &tools, true).expect("the artifact is written");
    let read = |f: &str| std::fs::read_to_string(written.dir.join(f)).expect("written file");
    let count = |text: &str| text.lines().count();
    let rejected = read("rejected.jsonl");
    assert_eq!(count(&read("train.jsonl")), s.train);
    assert_eq!(count(&read("eval.jsonl")), s.eval);
    assert_eq!(count(&rejected), s.rejected + s.duplicates);
    for line in rejected.lines() {
        let v: Value = serde_json::from_str(line).expect("rejected.jsonl is JSON Lines");
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{line}");
        assert!(v["detail"].as_str().is_some_and(|r| !r.is_empty()), "{line}");
        let source = v["source"].as_str().expect("source");
        let (f, n) = source.rsplit_once(':').expect("file:line");
        assert_eq!(f, name);
        assert!(n.parse::<usize>().is_ok_and(|n| (1..=lines).contains(&n)), "{source}");
    }
    std::fs::remove_dir_all(parent).expect("scratch folder removed");
});
