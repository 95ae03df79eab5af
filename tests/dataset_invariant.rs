//! The dataset's count invariant as a property over generated corpora. For any mix of good, bad, duplicate,
//! malformed, truncated, binary and oversized records, in JSON Lines files, JSON arrays (complete or cut off)
//! and single-object files, every input record ends up exactly once in train, eval or rejected —
//! input = kept + rejected + duplicates — and each dropped one carries a reason and the file and line where it
//! starts.
//!
//! The corpora come from a seeded generator written here: proptest and quickcheck would both turn on
//! `getrandom`'s `sys_rng` feature, changing the build of crates already in Cargo.lock. A failing case names
//! its seed; `DATASET_INVARIANT_CASES=N` runs more cases. `a_lost_record_is_caught` applies a test-only
//! mutation (one record dropped before counting) and requires the same check to fail on every corpus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fireweave_ai::api::Dataset;
use fireweave_ai::api::dataset::{SourceFormat, default_tools};
use fireweave_ai::dataset::curate::{self, Config, Fate};
use fireweave_ai::dataset::load::{self, SourceOptions};
use fireweave_ai::dataset::validate::Rules;
use fireweave_ai::dataset::{self, BuildOptions};
use serde_json::{Value, json};

/// SplitMix64: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const QUESTIONS: &[&str] = &[
    "How do I check whether HTTPS is allowed from 10.20.1.15 to 172.16.5.10?",
    "Why is my Palo Alto NAT rule shadowed by an earlier policy?",
    "What does a 13-digit timestamp such as 1733312345678 in the syslog mean?",
    "Which AWS account (123456789012) owns the security group sg-0a1b2c3d?",
    "How should I segment the PCI zone from the corporate VLAN?",
    "Can you explain stateful versus stateless firewall inspection?",
];

const SENTENCES: &[&str] = &[
    "Open Analyze, enter the source 10.20.1.15 and the destination 172.16.5.10, and read the verdict per hop.",
    "The first matching rule wins, so a broad allow above a narrow deny shadows it.",
    "Run `show security policies hit-count` to see which rule matched the flow.",
    "A timestamp in milliseconds has 13 digits; 1733312345678 is 2024-12-04 11:39:05 UTC.",
    "Account ids are 12 digits, like 123456789012, and versions look like 10.2.3.4.5.",
    "Allow TCP 443 inbound from the load balancer subnet 10.0.0.0/16 and deny everything else.",
    "Stateful firewalls track sessions, so return traffic is allowed without a rule of its own.",
    "Use a dedicated zone for the cardholder data environment and log every denied packet to the SIEM.",
    "Version strings such as 999.1.1.1 or 1.2.3.4/33 are not addresses.",
];

const CLI: &[&str] = &[
    "```\nset security policies from-zone trust to-zone untrust policy allow-web match application junos-https\n```",
    "```bash\naws ec2 describe-security-groups --group-ids sg-0a1b2c3d --region us-east-1\n```",
    "$ iptables -A INPUT -p tcp --dport 22 -s 10.50.0.20 -j ACCEPT",
    "access-list OUTSIDE_IN extended permit tcp any host 172.16.5.10 eq 443",
];

/// A long, concrete answer: several sentences, commands, and a token that makes it unique.
fn answer(r: &mut Rng, unique: u64) -> String {
    let mut parts = Vec::new();
    for _ in 0..2 + r.below(5) {
        parts.push(r.pick(SENTENCES).to_string());
    }
    if r.chance(70) {
        parts.push(r.pick(CLI).to_string());
    }
    parts.push(format!(
        "Reference ticket CHG{unique:012} tracks this change on port {}.",
        r.below(65536)
    ));
    parts.join("\n\n")
}

fn question(r: &mut Rng, unique: u64) -> String {
    format!("{} (case {unique})", r.pick(QUESTIONS))
}

/// A record that should pass validation, in one of the three input shapes.
fn good(r: &mut Rng, unique: u64) -> Value {
    let (q, a) = (question(r, unique), answer(r, unique));
    match r.below(4) {
        0 => json!({"id": format!("qa-{unique}"), "question": q, "answer": a}),
        1 => json!({"conversations": [{"from": "system", "value": "You are a network security expert."},
                                      {"from": "human", "value": q}, {"from": "gpt", "value": a}]}),
        2 => json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}),
        _ => {
            let args = json!({"source": "10.20.1.15", "destination": "172.16.5.10", "port": r.below(65536)});
            json!({"topic": "tools", "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "check_traffic_flow", "arguments": args.to_string()}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"verdict\": \"allowed\"}"},
                {"role": "assistant", "content": a}]})
        }
    }
}

/// A record that is JSON but not a trainable conversation.
fn bad(r: &mut Rng, unique: u64) -> Value {
    let (q, a) = (question(r, unique), answer(r, unique));
    match r.below(10) {
        0 => json!({"question": q}),
        1 => json!({"question": q, "answer": ""}),
        2 => json!({"question": "hi", "answer": a}),
        3 => json!({"question": q, "answer": format!("{a}\n\nTODO: finish [insert details]")}),
        4 => json!({"conversations": [{"from": "customer", "value": q}, {"from": "gpt", "value": a}]}),
        5 => json!({"messages": [{"role": "assistant", "content": a}, {"role": "user", "content": q}]}),
        6 => json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": null,
            "tool_calls": [{"function": {"name": "rm_rf", "arguments": "{}"}}]}]}),
        7 => json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": null,
            "tool_calls": [{"function": {"name": "check_traffic_flow", "arguments": "{\"port\": \"many\"}"}}]}]}),
        8 => json!([1, 2, 3]),
        _ => json!({"text": a}),
    }
}

/// One line of a JSON Lines file (no newline in it) and whether it is a record at all.
fn jsonl_line(r: &mut Rng, unique: u64, earlier: &[String], max_record_bytes: usize) -> (String, bool) {
    match r.below(100) {
        0..=44 => (good(r, unique).to_string(), true),
        45..=59 => (bad(r, unique).to_string(), true),
        // An exact copy, a copy in other case and spacing (exact after normalization), or punctuation changed
        // (a near duplicate).
        60..=71 if !earlier.is_empty() => {
            let line = r.pick(earlier).clone();
            let copy = match r.below(3) {
                0 => line,
                1 => line.replace(". ", ".  ").replace("the ", "The "),
                _ => line.replace(", ", " ; "),
            };
            (copy, true)
        }
        72..=77 => {
            let line = good(r, unique).to_string();
            let mut cut = 1 + r.below(line.len() - 2);
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            (line[..cut].to_string(), true)
        }
        78..=82 => {
            let n = 1 + r.below(40);
            // Arbitrary bytes but '\n', kept UTF-8 here (the fuzz targets cover invalid UTF-8).
            let text: String = (0..n)
                .map(|_| char::from_u32(1 + r.below(0x2FF) as u32).unwrap_or('?'))
                .filter(|&c| c != '\n')
                .collect();
            // The loader skips lines of ASCII white space only.
            let is_record = !text.bytes().all(|b| b.is_ascii_whitespace());
            (text, is_record)
        }
        83..=86 if max_record_bytes <= 4096 => {
            let pad = "x".repeat(max_record_bytes + r.below(64));
            (
                json!({"question": question(r, unique), "answer": pad}).to_string(),
                true,
            )
        }
        87..=90 => (String::new(), false),
        91..=92 => (" \t ".to_string(), false),
        _ => (format!("{{\"question\": \"{}\", ", question(r, unique)), true),
    }
}

/// A generated input file and the 1-based line of each record it holds, in order.
struct File {
    name: String,
    bytes: Vec<u8>,
    record_lines: Vec<usize>,
}

fn jsonl_file(r: &mut Rng, name: String, next: &mut u64, max_record_bytes: usize) -> File {
    let mut text = String::new();
    let mut record_lines = Vec::new();
    let mut earlier: Vec<String> = Vec::new();
    let crlf = r.chance(20);
    for line_no in 1..=r.below(40) + 1 {
        *next += 1;
        let (line, is_record) = jsonl_line(r, *next, &earlier, max_record_bytes);
        if is_record {
            record_lines.push(line_no);
        }
        if line.starts_with('{') {
            earlier.push(line.clone());
        }
        text.push_str(&line);
        text.push_str(if crlf { "\r\n" } else { "\n" });
    }
    if r.chance(30) {
        // No newline after the last line.
        text.truncate(text.trim_end_matches(['\r', '\n']).len());
    }
    File {
        name,
        bytes: text.into_bytes(),
        record_lines,
    }
}

/// A JSON array, one element per line; sometimes cut off inside its last element (which is then one rejected
/// record, at the line where it starts).
fn array_file(r: &mut Rng, name: String, next: &mut u64) -> File {
    let n = 1 + r.below(20);
    let mut elements = Vec::new();
    for _ in 0..n {
        *next += 1;
        let v = if r.chance(75) { good(r, *next) } else { bad(r, *next) };
        elements.push(v.to_string());
    }
    let mut text = String::from("[\n");
    for (i, e) in elements.iter().enumerate() {
        text.push_str("  ");
        text.push_str(e);
        text.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    text.push_str("]\n");
    let record_lines = (2..2 + n).collect();
    if r.chance(30) {
        // Cut inside the last element: after its first byte, before its closing bracket.
        let last = elements.last().expect("one element at least");
        let start = text.len() - "]\n".len() - "\n".len() - last.len();
        let cut = start + 1 + r.below(last.len() - 2);
        text.truncate(cut);
    }
    File {
        name,
        bytes: text.into_bytes(),
        record_lines,
    }
}

fn single_object_file(r: &mut Rng, name: String, next: &mut u64) -> File {
    *next += 1;
    let v = good(r, *next);
    File {
        name,
        bytes: serde_json::to_vec_pretty(&v).expect("JSON"),
        record_lines: vec![1],
    }
}

/// A corpus: one to three files and the filters it is curated with.
struct Corpus {
    seed: u64,
    files: Vec<File>,
    max_record_bytes: usize,
    min_score: u8,
    near: f64,
    eval_fraction: f64,
}

fn corpus(seed: u64) -> Corpus {
    let mut r = Rng(seed);
    let max_record_bytes = *r.pick(&[512usize, 2048, 1 << 20]);
    let mut next = seed << 16;
    let files = (0..1 + r.below(3))
        .map(|i| match r.below(5) {
            0 | 1 => jsonl_file(&mut r, format!("part{i}.jsonl"), &mut next, max_record_bytes),
            2 => jsonl_file(&mut r, format!("part{i}.ndjson"), &mut next, max_record_bytes),
            3 => array_file(&mut r, format!("part{i}.json"), &mut next),
            _ => single_object_file(&mut r, format!("part{i}.json"), &mut next),
        })
        .collect();
    Corpus {
        seed,
        files,
        max_record_bytes,
        min_score: *r.pick(&[0u8, 30, 50]),
        near: *r.pick(&[0.0, 0.8, 1.0]),
        eval_fraction: *r.pick(&[0.0, 0.1, 0.5]),
    }
}

impl Corpus {
    fn records(&self) -> usize {
        self.files.iter().map(|f| f.record_lines.len()).sum()
    }

    /// Every record's (file name, line): what the outputs must account for, each exactly once.
    fn sources(&self) -> BTreeMap<(String, usize), usize> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            for &line in &f.record_lines {
                *out.entry((f.name.clone(), line)).or_default() += 1;
            }
        }
        out
    }
}

/// What a run produced, as the check reads it: per record, its source and whether (and why) it was dropped.
#[derive(Clone, Debug)]
struct Observed {
    input: usize,
    kept: usize,
    rejected: usize,
    duplicates: usize,
    /// (file name, line, reason when dropped, detail when dropped)
    records: Vec<(String, usize, Option<String>, Option<String>)>,
}

/// The invariant: every input record accounted for exactly once, under its own file and line, the counts adding
/// up, and every dropped record with a reason and a detail.
fn check(c: &Corpus, o: &Observed) -> Result<(), String> {
    let expected = c.records();
    if o.input != expected {
        return Err(format!("{expected} records in the files but input = {}", o.input));
    }
    if o.kept + o.rejected + o.duplicates != o.input {
        return Err(format!(
            "input {} != kept {} + rejected {} + duplicates {}",
            o.input, o.kept, o.rejected, o.duplicates
        ));
    }
    if o.records.len() != o.input {
        return Err(format!("{} records accounted for, input {}", o.records.len(), o.input));
    }
    let mut seen: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for (file, line, reason, detail) in &o.records {
        *seen.entry((file.clone(), *line)).or_default() += 1;
        if reason.as_deref() == Some("") || detail.as_deref() == Some("") || reason.is_some() != detail.is_some() {
            return Err(format!(
                "{file}:{line}: dropped without a reason: {reason:?} {detail:?}"
            ));
        }
    }
    if seen != c.sources() {
        let want = c.sources();
        let missing: Vec<_> = want.keys().filter(|k| seen.get(*k) != want.get(*k)).collect();
        let extra: Vec<_> = seen.keys().filter(|k| seen.get(*k) != want.get(*k)).collect();
        return Err(format!("sources differ: expected {missing:?}, got {extra:?}"));
    }
    let dropped = o.records.iter().filter(|r| r.2.is_some()).count();
    if dropped != o.rejected + o.duplicates {
        return Err(format!(
            "{dropped} dropped records listed, rejected {} + duplicates {}",
            o.rejected, o.duplicates
        ));
    }
    Ok(())
}

/// The loader and curation in memory, file by file as the worker reads them.
fn observe_in_memory(c: &Corpus) -> Observed {
    let opts = SourceOptions {
        format: SourceFormat::Auto,
        topic: None,
        max_record_bytes: c.max_record_bytes,
    };
    let mut items = Vec::new();
    for f in &c.files {
        let loaded = load::parse_bytes(&f.bytes, &f.name, &opts);
        let lines: Vec<usize> = loaded.iter().map(|i| i.origin.line).collect();
        assert_eq!(lines, f.record_lines, "seed {}: {} record lines", c.seed, f.name);
        items.extend(loaded);
    }
    let cfg = Config {
        rules: Rules {
            min_answer_chars: 40,
            reject_placeholders: true,
            tools: default_tools(),
        },
        min_score: c.min_score,
        exact: true,
        near: c.near,
        eval_fraction: c.eval_fraction,
        seed: c.seed,
    };
    let outcome = curate::curate(&items, &cfg).unwrap_or_else(|e| panic!("seed {}: {e}", c.seed));
    let s = &outcome.stats;
    let records = items
        .iter()
        .zip(&outcome.fates)
        .map(|(item, fate)| {
            let (reason, detail) = match fate {
                Fate::Train | Fate::Eval => (None, None),
                Fate::Rejected(r) => (Some(r.reason.as_str().to_string()), Some(r.detail.clone())),
                Fate::Duplicate { reason, keep, .. } => (
                    Some(reason.as_str().to_string()),
                    Some(format!("duplicate of {}", items[*keep].origin)),
                ),
            };
            (item.origin.file.to_string(), item.origin.line, reason, detail)
        })
        .collect();
    Observed {
        input: s.input,
        kept: s.kept,
        rejected: s.rejected,
        duplicates: s.duplicates,
        records,
    }
}

fn write_corpus(c: &Corpus, dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("input folder");
    for f in &c.files {
        std::fs::write(input.join(&f.name), &f.bytes).expect("input file");
    }
    let manifest = format!(
        "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {{name: prop}}\nspec:\n  sources: [{{path: in}}]\n  \
         filters: {{minQualityScore: {}, maxRecordBytes: {}, dedup: {{exact: true, nearDuplicateThreshold: {:?}}}}}\n  \
         split: {{evalFraction: {:?}, seed: {}}}\n",
        c.min_score, c.max_record_bytes, c.near, c.eval_fraction, c.seed
    );
    let path = dir.join("dataset.yaml");
    std::fs::write(&path, manifest).expect("manifest");
    path
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The dataset step end to end (manifest → loader → curation → artifact), read back from the written files.
fn observe_pipeline(c: &Corpus, dir: &Path) -> Observed {
    let manifest = write_corpus(c, dir);
    let resource: Dataset = fireweave_ai::contract::document::load(&manifest)
        .unwrap_or_else(|e| panic!("seed {}: the generated manifest is valid: {e}", c.seed));
    let artifacts = dir.join("artifacts");
    let built = dataset::build(
        &resource,
        &BuildOptions {
            artifacts: artifacts.clone(),
            base_dir: dir.to_path_buf(),
            openai: false,
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "seed {}: the dataset step failed instead of rejecting records: {e}",
            c.seed
        )
    });
    let out = artifacts.join(&built.artifact.uri);
    let source = |v: &Value| -> (String, usize) {
        let s = v["source"].as_str().expect("every line names its source");
        let (file, line) = s.rsplit_once(':').expect("file:line");
        let name = Path::new(file)
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        (name, line.parse().expect("line number"))
    };
    let mut records = Vec::new();
    for f in ["train.jsonl", "eval.jsonl"] {
        for v in jsonl(&out.join(f)) {
            let (file, line) = source(&v);
            records.push((file, line, None, None));
        }
    }
    for v in jsonl(&out.join("rejected.jsonl")) {
        let (file, line) = source(&v);
        let text = |k: &str| v[k].as_str().map(str::to_string).or(Some(String::new()));
        records.push((file, line, text("reason"), text("detail")));
    }
    let s = &built.stats;
    Observed {
        input: s.input,
        kept: s.kept,
        rejected: s.rejected,
        duplicates: s.duplicates,
        records,
    }
}

fn cases(default: u64) -> u64 {
    std::env::var("DATASET_INVARIANT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SEED: u64 = 0x5EED_2026;

#[test]
fn every_record_is_kept_rejected_or_a_duplicate_in_memory() {
    let mut totals = [0usize; 4];
    for k in 0..cases(400) {
        let c = corpus(SEED + k);
        let o = observe_in_memory(&c);
        check(&c, &o).unwrap_or_else(|e| panic!("seed {}: {e}", c.seed));
        for (t, v) in totals.iter_mut().zip([o.input, o.kept, o.rejected, o.duplicates]) {
            *t += v;
        }
    }
    // The generator reaches every fate, so the property is not vacuous.
    assert!(
        totals[1..].iter().all(|&n| n > 0),
        "input, kept, rejected, duplicates: {totals:?}"
    );
}

#[test]
fn every_record_is_kept_rejected_or_a_duplicate_in_the_artifact() {
    for k in 0..cases(400) / 10 {
        let c = corpus(SEED + 1_000_000 + k);
        let tmp = tempfile::tempdir().expect("tempdir");
        let o = observe_pipeline(&c, tmp.path());
        check(&c, &o).unwrap_or_else(|e| panic!("seed {}: {e}", c.seed));
    }
}

/// Test-only mutation: one record dropped before counting, the way a lost record would look.
fn drop_one(mut o: Observed, r: &mut Rng) -> Observed {
    let i = r.below(o.records.len());
    let (_, _, reason, _) = o.records.remove(i);
    match reason.as_deref() {
        None => o.kept -= 1,
        Some("exact_duplicate" | "near_duplicate") => o.duplicates -= 1,
        Some(_) => o.rejected -= 1,
    }
    o.input -= 1;
    o
}

#[test]
fn a_lost_record_is_caught() {
    let mut r = Rng(SEED);
    let mut checked = 0;
    for k in 0..cases(400) / 4 {
        let c = corpus(SEED + k);
        let o = observe_in_memory(&c);
        if o.records.is_empty() {
            continue;
        }
        check(&c, &o).unwrap_or_else(|e| panic!("seed {}: {e}", c.seed));
        let lost = drop_one(o, &mut r);
        assert!(
            check(&c, &lost).is_err(),
            "seed {}: a dropped record went unnoticed",
            c.seed
        );
        checked += 1;
    }
    // And through the artifact: a line missing from rejected.jsonl or train.jsonl is caught the same way.
    let c = corpus(SEED + 1_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = observe_pipeline(&c, tmp.path());
    check(&c, &o).expect("the unmutated run passes");
    assert!(check(&c, &drop_one(o, &mut r)).is_err());
    assert!(checked > 50, "{checked}");
}
