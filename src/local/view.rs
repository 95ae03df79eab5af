//! What the person at the terminal reads at the end: one summary table of the run, then how to talk to the
//! served model.

use std::fmt::Write as _;

use super::Done;
use super::steps::{Pipeline, Serving};

/// Prints the summary table to stdout.
pub fn summary(p: &Pipeline) {
    print!("{}", render_summary(p));
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// The table as text (no I/O, so it can be checked).
pub fn render_summary(p: &Pipeline) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nfireweave-ai run — artifacts in {}\n", p.artifacts.display());
    // The first column is as wide as the longest resource name, so long names do not push the others.
    let width = p
        .done
        .iter()
        .map(|(k, _, _)| k.to_string().len())
        .max()
        .unwrap_or(0)
        .max(8);
    let _ = writeln!(s, "  {:<width$}  {:<10} {:>8}", "resource", "step", "time");
    for (key, done, took) in &p.done {
        let what = match done {
            Done::Ran => "ran",
            Done::Skipped => "unchanged",
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {:<10} {:>7.1}s",
            key.to_string(),
            what,
            took.as_secs_f64()
        );
    }
    for (key, ds) in &p.datasets {
        let Some(st) = ds.status.as_ref().and_then(|s| s.stats.as_ref()) else {
            continue;
        };
        let _ = writeln!(
            s,
            "\n  {key}: {} records → {} kept ({} train, {} eval), {} rejected, {} duplicates",
            st.input, st.kept, st.train, st.eval, st.rejected, st.duplicates
        );
        if let Some(a) = ds.status.as_ref().and_then(|s| s.artifact.as_ref()) {
            let _ = writeln!(s, "    {}  (rejected.jsonl lists every dropped record and why)", a.uri);
        }
    }
    for (key, tr) in &p.runs {
        let Some(st) = tr.status.as_ref() else { continue };
        let loss = |l: Option<f64>| l.map_or_else(|| "n/a".to_string(), |l| format!("{l:.4}"));
        let _ = writeln!(
            s,
            "\n  {key}: final loss {}, eval loss {}",
            loss(st.final_loss),
            loss(st.eval_loss)
        );
        if let Some(a) = &st.artifacts {
            if let Some(adapter) = &a.adapter {
                let _ = writeln!(s, "    adapter  {}", adapter.uri);
                let report = std::path::Path::new(&adapter.uri)
                    .with_file_name("report")
                    .join("loss.svg");
                if p.artifacts.join(&report).is_file() {
                    let _ = writeln!(s, "    loss curve  {}", p.artifacts.join(&report).display());
                }
            }
            for g in &a.gguf {
                let _ = writeln!(
                    s,
                    "    {:<7} {:>10}  sha256:{}…  {}",
                    g.quantization.as_str(),
                    human_bytes(g.size_bytes),
                    short(&g.digest),
                    g.uri
                );
            }
        }
    }
    for sv in &p.servings {
        let _ = writeln!(
            s,
            "\n  {}: {} ({}) on http://{}",
            sv.key, sv.object.spec.model_name, sv.model.source, sv.addr
        );
    }
    s
}

/// Printed once a server answers: ready-to-paste examples.
pub fn serving_help(s: &Serving) {
    let name = &s.object.spec.model_name;
    let addr = s.addr;
    println!(
        "\n{name} is ready on http://{addr} (Ollama API; Ctrl-C stops it).\n\n\
         curl http://{addr}/api/chat -d '{{\"model\": \"{name}\", \"stream\": false, \"messages\": [{{\"role\": \"user\", \"content\": \"How do I check if traffic from 10.0.0.5 to 10.1.0.10 on port 443 is allowed in FireWeave?\"}}]}}'\n\n\
         python3 -c 'import ollama; print(ollama.Client(host=\"http://{addr}\").chat(model=\"{name}\", messages=[{{\"role\": \"user\", \"content\": \"What does a shadowed firewall rule mean?\"}}])[\"message\"][\"content\"])'\n"
    );
}
