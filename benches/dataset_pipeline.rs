//! Throughput and peak memory of `fireweave-ai dataset` (load + validate + score + exact and near dedup +
//! split + write) on a generated corpus, beside a Python peer doing the same work with datasketch's MinHash
//! LSH. Prints figures; asserts nothing.
//!
//!   cargo bench --no-default-features --bench dataset_pipeline -- --records 1000000 \
//!       [--python ~/.cache/fireweave-ai/bench-venv/bin/python --python-records 100000]

use fireweave_ai::dataset::{self, Args, FormatArg};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TERMS: &[&str] = &[
    "firewall",
    "rule",
    "NAT",
    "zone",
    "policy",
    "subnet",
    "route",
    "TCP",
    "UDP",
    "VPN",
    "IPsec",
    "BGP",
    "OSPF",
    "ACL",
    "DNS",
    "TLS",
    "certificate",
    "segment",
    "VLAN",
    "gateway",
    "session",
    "log",
    "compliance",
    "audit",
];

/// A pronounceable vocabulary, so texts share words the way real prose does without repeating whole phrases.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const SYL: &[&str] = &[
        "ka", "to", "ri", "ne", "sa", "lo", "mi", "du", "pe", "an", "or", "ti", "ve", "qu", "bo",
    ];
    (0..4000)
        .map(|_| {
            (0..2 + rng.below(3))
                .map(|_| SYL[rng.below(SYL.len())])
                .collect::<String>()
        })
        .collect()
}

fn sentence(rng: &mut Rng, vocab: &[String], out: &mut String) {
    let n = 8 + rng.below(10);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        if rng.below(4) == 0 {
            out.push_str(TERMS[rng.below(TERMS.len())]);
        } else {
            out.push_str(&vocab[rng.below(vocab.len())]);
        }
    }
    out.push_str(". ");
}

fn record(rng: &mut Rng, vocab: &[String], i: usize) -> (String, String) {
    let mut q = String::from("How do I ");
    sentence(rng, vocab, &mut q);
    let mut a = String::new();
    for _ in 0..3 {
        sentence(rng, vocab, &mut a);
    }
    let port = 1024 + rng.below(60000);
    a.push_str(&format!(
        "\n\n1. Allow TCP {port} from 10.{}.{}.0/24.\n2. Commit and verify.\n\n```\nset rulebase security rules r{i} service tcp-{port} action allow\n```\n",
        rng.below(256),
        rng.below(256)
    ));
    for _ in 0..2 {
        sentence(rng, vocab, &mut a);
    }
    (q, a)
}

/// 80% unique, 10% exact copies, 5% punctuation variants (near duplicates), 5% bad records.
fn generate(path: &Path, n: usize) -> std::io::Result<()> {
    let mut rng = Rng(42);
    let vocab = vocabulary(&mut rng);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut recent: Vec<(String, String)> = Vec::with_capacity(1024);
    for i in 0..n {
        let kind = rng.below(100);
        let (q, a) = if kind < 10 && !recent.is_empty() {
            recent[rng.below(recent.len())].clone()
        } else if kind < 15 && !recent.is_empty() {
            let (q, a) = recent[rng.below(recent.len())].clone();
            (q, a.replace(". ", " ; ").replace("\n\n", "\n"))
        } else if kind < 20 {
            (
                "What is NAT?".to_string(),
                if kind < 17 {
                    "TODO".into()
                } else {
                    "[insert answer here] about NAT rules.".into()
                },
            )
        } else {
            let r = record(&mut rng, &vocab, i);
            if recent.len() < 1024 {
                recent.push(r.clone());
            } else {
                let k = rng.below(1024);
                recent[k] = r.clone();
            }
            r
        };
        let topic = TERMS[i % 8];
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"topic": topic, "question": q, "answer": a}),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let records: usize = arg("--records").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let corpus = tmp.path().join("corpus.jsonl");
    let t = Instant::now();
    generate(&corpus, records).expect("generate corpus");
    let size = std::fs::metadata(&corpus).map_or(0, |m| m.len());
    println!(
        "corpus: {records} records, {:.1} MiB, generated in {:.1}s",
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let rss_before = peak_rss_mib();
    let out = tmp.path().join("out");
    let args = Args {
        spec: None,
        artifacts: PathBuf::from("/nonexistent"),
        input: vec![corpus.clone()],
        out: Some(out),
        format: FormatArg::Qa,
        min_score: None,
        near_threshold: None,
        eval_fraction: None,
        seed: None,
        openai: false,
        termination_log: PathBuf::from("/nonexistent/termination-log"),
    };
    let t = Instant::now();
    let r = dataset::run(args).expect("pipeline");
    let secs = t.elapsed().as_secs_f64();
    let s = &r.stats;
    println!(
        "fireweave-ai dataset: {records} records in {secs:.2}s = {:.0} records/s; peak RSS {:.0} MiB (before run {:.0} MiB); \
         {} threads; kept {} rejected {} duplicates {}; artifact {}",
        records as f64 / secs,
        peak_rss_mib(),
        rss_before,
        rayon::current_num_threads(),
        s.kept,
        s.rejected,
        s.duplicates,
        r.artifact.digest
    );
    if let Some(python) = arg("--python") {
        let n: usize = arg("--python-records").and_then(|v| v.parse().ok()).unwrap_or(records);
        let peer_corpus = if n == records {
            corpus
        } else {
            let p = tmp.path().join("peer.jsonl");
            generate(&p, n).expect("generate peer corpus");
            p
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dataset_peer.py");
        let output = std::process::Command::new(python)
            .arg(script)
            .arg(&peer_corpus)
            .arg(tmp.path().join("peer-out"))
            .output()
            .expect("run the Python peer");
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
}
