//! The dataset pipeline end to end on real files: the shipped sample, malformed inputs, determinism.
//! Every test checks the count invariant (input = kept + rejected + duplicates) on the written artifact.

use fireweave_ai::dataset::{self, Args, FormatArg, RunResult};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn args(inputs: Vec<PathBuf>, out: &Path) -> Args {
    Args {
        spec: None,
        artifacts: PathBuf::from("/nonexistent"),
        input: inputs,
        out: Some(out.to_path_buf()),
        format: FormatArg::Auto,
        min_score: None,
        near_threshold: None,
        eval_fraction: None,
        seed: None,
        openai: false,
        termination_log: out.join("termination-log"),
    }
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The invariant, from the files themselves as well as from the stats.
fn check_invariant(out: &Path, r: &RunResult) -> PathBuf {
    let s = &r.stats;
    assert_eq!(s.input, s.kept + s.rejected + s.duplicates, "{s:?}");
    assert_eq!(s.kept, s.train + s.eval);
    let dir = out.join(&r.artifact.uri);
    assert!(dir.ends_with(r.artifact.digest.hex()), "{}", dir.display());
    let train = read_jsonl(&dir.join("train.jsonl")).len();
    let eval = read_jsonl(&dir.join("eval.jsonl")).len();
    let rejected = read_jsonl(&dir.join("rejected.jsonl"));
    assert_eq!((train, eval), (s.train, s.eval));
    assert_eq!(rejected.len(), s.rejected + s.duplicates);
    let stats: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).expect("stats.json"))
        .expect("stats.json is JSON");
    assert_eq!(stats["input"], s.input);
    dir
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/fireweave")
}

#[test]
fn the_shipped_sample_is_curated_with_every_drop_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = dataset::run(args(vec![sample()], tmp.path())).expect("pipeline runs");
    let dir = check_invariant(tmp.path(), &r);
    let s = &r.stats;
    assert!(s.input >= 160, "{}", s.input);
    // 14 records are deliberately bad; a few good but plain answers (no commands, no code) score just under
    // the seed's threshold of 50 and are dropped as low quality, with their score in rejected.jsonl.
    assert!(s.kept >= 140, "the sample's good records are kept: {s:?}");
    assert!(s.eval > 0 && s.train > s.eval);
    let rejected = read_jsonl(&dir.join("rejected.jsonl"));
    let by_id = |id: &str| {
        rejected
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not in rejected.jsonl"))
            .clone()
    };
    for (id, reason) in [
        ("bad-placeholder-1", "placeholder"),
        ("bad-placeholder-2", "placeholder"),
        ("bad-placeholder-3", "placeholder"),
        ("bad-short-1", "too_short"),
        ("bad-short-2", "too_short"),
        ("bad-empty", "empty_field"),
        ("bad-lowq", "low_quality"),
        ("bad-unknown-tool", "unknown_tool"),
        ("bad-tool-args", "invalid_tool_arguments"),
        ("bad-order", "wrong_order"),
        ("bad-role", "wrong_role"),
        ("dup-near-1", "near_duplicate"),
    ] {
        let r = by_id(id);
        assert_eq!(r["reason"], reason, "{id}: {r}");
        assert!(
            r["source"].as_str().is_some_and(|s| s.contains("bad-records.jsonl:")),
            "{r}"
        );
    }
    // A record that is JSON but not a valid conversation is kept whole, so nothing is lost.
    assert_eq!(by_id("bad-role")["record"]["conversations"][0]["from"], "customer");
    // The exact copy of feat-004 and the original: one of them is kept, the other is an exact duplicate.
    let exact: Vec<&Value> = rejected.iter().filter(|r| r["reason"] == "exact_duplicate").collect();
    assert_eq!(exact.len(), 1, "{exact:?}");
    assert!(
        exact[0]["keptSource"].as_str().is_some_and(|s| s.contains(".jsonl:")),
        "{}",
        exact[0]
    );
    assert!(
        rejected
            .iter()
            .any(|r| r["reason"] == "malformed_json" && r["detail"].as_str().is_some_and(|d| d.contains("truncated")))
    );
    // Trainer's input: ShareGPT, tool calls as objects, tools attached where used.
    let train = read_jsonl(&dir.join("train.jsonl"));
    for line in &train {
        let turns = line["conversations"].as_array().expect("conversations");
        assert!(
            turns
                .iter()
                .all(|t| matches!(t["from"].as_str(), Some("system" | "human" | "gpt" | "tool")))
        );
        assert!(line["source"].is_string());
    }
    let with_calls = train
        .iter()
        .chain(read_jsonl(&dir.join("eval.jsonl")).iter())
        .filter(|l| {
            l["conversations"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t.get("tool_calls").is_some()))
        })
        .cloned()
        .collect::<Vec<_>>();
    assert!(with_calls.len() >= 20, "{}", with_calls.len());
    for l in &with_calls {
        assert_eq!(l["tools"].as_array().map(Vec::len), Some(3), "{l}");
        let call = l["conversations"]
            .as_array()
            .and_then(|t| t.iter().find_map(|t| t.get("tool_calls")))
            .expect("call");
        assert!(call[0]["arguments"].is_object());
    }
    // Per-topic pass rates and the histogram cover the seed's FireWeave topics.
    let topics: Vec<&str> = s.topics.iter().map(|t| t.name.as_str()).collect();
    for t in [
        "fireweave-features",
        "fireweave-troubleshooting",
        "fireweave-api",
        "fireweave-function-calling",
        "fireweave-disambiguation",
    ] {
        assert!(topics.contains(&t), "{topics:?}");
    }
    assert_eq!(s.score_histogram.iter().map(|b| b.count).sum::<usize>(), s.valid);
    let svg = std::fs::read_to_string(dir.join("score-histogram.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("50-59"));
    // The result went to the termination log too.
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("termination-log")).unwrap_or_default())
            .unwrap_or(Value::Null);
    assert!(
        log.is_null(),
        "the termination log is written only when the file exists"
    );
}

#[test]
fn reruns_are_deterministic_and_content_addressed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("termination-log"), "").expect("touch");
    let a = dataset::run(args(vec![sample()], tmp.path())).expect("first run");
    let b = dataset::main(args(vec![sample()], tmp.path())).expect("second run, as the Job runs it");
    assert_eq!(a.artifact.digest, b.artifact.digest);
    check_invariant(tmp.path(), &a);
    assert_eq!(b.stats.kept, a.stats.kept as u64);
    let log: Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("termination-log")).expect("log"))
        .expect("termination log is JSON");
    assert_eq!(log["artifact"]["digest"], a.artifact.digest.to_string());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("latest"))
            .expect("latest")
            .trim(),
        a.artifact.digest.hex()
    );
    // No temporary folders are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // A different seed moves records between train and eval, and so changes the digest.
    let mut other = args(vec![sample()], tmp.path());
    other.seed = Some(7);
    let c = dataset::run(other).expect("other seed");
    check_invariant(tmp.path(), &c);
    assert_ne!(c.artifact.digest, a.artifact.digest);
    assert_eq!(c.stats.kept, a.stats.kept);
}

#[test]
fn the_split_is_stratified_by_topic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = args(vec![sample()], tmp.path());
    a.eval_fraction = Some(0.2);
    let r = dataset::run(a).expect("runs");
    let dir = check_invariant(tmp.path(), &r);
    let eval = read_jsonl(&dir.join("eval.jsonl"));
    let train = read_jsonl(&dir.join("train.jsonl"));
    for topic in [
        "fireweave-features",
        "fireweave-troubleshooting",
        "fireweave-function-calling",
    ] {
        let e = eval.iter().filter(|l| l["topic"] == topic).count();
        let t = train.iter().filter(|l| l["topic"] == topic).count();
        let expected = ((e + t) as f64 * 0.2).round() as usize;
        assert_eq!(e, expected, "{topic}: {e} eval of {}", e + t);
    }
}

#[test]
fn malformed_files_give_clear_errors_and_never_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = tmp.path().join("inputs");
    std::fs::create_dir_all(&inputs).expect("mkdir");
    let good = r#"{"question": "How do I find shadowed rules in FireWeave?", "answer": "Open Policy Analysis and choose Shadowed Rules. FireWeave compares each rule with the rules above it, using resolved objects, and lists full and partial shadowing with the shadowing rule.\n\n1. Pick the firewall, for example `pa-dc1-edge`.\n2. Review conflicts (an allow above a deny) first.\n3. Reorder or delete redundant rules through a change request.\n\n```\nfireweave analyze shadowed --firewall pa-dc1-edge\n```"}"#;
    std::fs::write(inputs.join("truncated.json"), format!("[{good},\n{}", &good[..60])).expect("write");
    let mut garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    garbage[0] = 0xff;
    std::fs::write(inputs.join("garbage.json"), &garbage).expect("write");
    std::fs::write(inputs.join("garbage.jsonl"), &garbage).expect("write");
    // 50 MB on one line: a single giant record.
    let huge = format!(
        "{{\"question\": \"big\", \"answer\": \"{}\"}}\n{good}\n",
        "a".repeat(50 << 20)
    );
    std::fs::write(inputs.join("huge.jsonl"), huge).expect("write");
    let out = tmp.path().join("out");
    let r = dataset::run(args(vec![inputs], &out)).expect("malformed records are rejections, not a failed run");
    let dir = check_invariant(&out, &r);
    // The good record appears twice (after the truncated array and after the 50 MB line): kept once, then an
    // exact duplicate.
    assert_eq!((r.stats.kept, r.stats.duplicates), (1, 1), "{:?}", r.stats);
    let rejected = read_jsonl(&dir.join("rejected.jsonl"));
    let find = |file: &str| {
        rejected
            .iter()
            .filter(|r| r["source"].as_str().is_some_and(|s| s.contains(file)))
            .collect::<Vec<_>>()
    };
    let t: Vec<_> = find("truncated.json:")
        .into_iter()
        .filter(|r| r["reason"] != "exact_duplicate")
        .collect();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["reason"], "malformed_json");
    assert!(
        t[0]["detail"].as_str().is_some_and(|d| d.contains("truncated")),
        "{}",
        t[0]
    );
    assert!(t[0]["source"].as_str().is_some_and(|s| s.ends_with(":2")), "{}", t[0]);
    let g = find("garbage.json:");
    assert_eq!(g.len(), 1);
    assert!(
        g[0]["detail"].as_str().is_some_and(|d| d.contains("binary")),
        "{}",
        g[0]
    );
    assert!(find("garbage.jsonl:").iter().all(|r| r["reason"] == "malformed_json"));
    let h = find("huge.jsonl:1");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["reason"], "record_too_large");
    assert!(
        h[0]["detail"].as_str().is_some_and(|d| d.contains("maxRecordBytes")),
        "{}",
        h[0]
    );
}

#[test]
fn a_missing_input_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let err = dataset::run(args(vec![missing.clone()], tmp.path())).expect_err("must fail");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_spec_file_drives_the_run_into_the_artifact_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = tmp.path().join("dataset.yaml");
    std::fs::write(
        &spec,
        format!(
            "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {{name: sample, namespace: team-a}}\n\
             spec:\n  sources:\n    - path: {}\n  filters: {{minQualityScore: 60}}\n  openaiOutput: true\n",
            sample().display()
        ),
    )
    .expect("write");
    let artifacts = tmp.path().join("artifacts");
    let mut a = args(Vec::new(), &artifacts);
    a.out = None;
    a.spec = Some(spec);
    a.artifacts = artifacts.clone();
    let r = dataset::run(a).expect("runs");
    assert!(
        r.artifact.uri.starts_with("datasets/team-a/sample/"),
        "{}",
        r.artifact.uri
    );
    let dir = check_invariant(&artifacts, &r);
    assert_eq!(r.stats.min_quality_score, 60);
    let openai = read_jsonl(&dir.join("train.openai.jsonl"));
    assert_eq!(openai.len(), r.stats.train);
    let with_call = openai
        .iter()
        .find(|l| {
            l["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m.get("tool_calls").is_some()))
        })
        .expect("a tool-calling record");
    let msgs = with_call["messages"].as_array().expect("messages");
    let call = msgs.iter().find_map(|m| m.get("tool_calls")).expect("calls");
    assert!(
        call[0]["function"]["arguments"].is_string(),
        "OpenAI encodes arguments as a string"
    );
    assert!(
        msgs.iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"].is_string())
    );
}
