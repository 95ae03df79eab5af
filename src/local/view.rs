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
    let _ = writeln!(
        s,
        "  {:<width$}  {:<10} {:>7.1}s",
        "total",
        "",
        p.began.elapsed().as_secs_f64()
    );
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
                    g.digest.short(),
                    g.uri
                );
            }
        }
    }
    for (key, tr) in &p.runs {
        if let Some(e) = tr.status.as_ref().and_then(|s| s.evaluation.as_ref()) {
            s.push_str(&format!("\n  {key}: evaluation\n"));
            s.push_str(&evaluation_table(e));
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
pub fn serving_help(s: &Serving, since_start: std::time::Duration) {
    let name = &s.object.spec.model_name;
    let addr = s.addr;
    let at = super::steps::clock(since_start);
    println!(
        "\n{name} is ready on http://{addr} after {at} (Ollama API; Ctrl-C stops it).\n\n\
         curl http://{addr}/api/chat -d '{{\"model\": \"{name}\", \"stream\": false, \"messages\": [{{\"role\": \"user\", \"content\": \"How do I check if traffic from 10.0.0.5 to 10.1.0.10 on port 443 is allowed in FireWeave?\"}}]}}'\n\n\
         python3 -c 'import ollama; print(ollama.Client(host=\"http://{addr}\").chat(model=\"{name}\", messages=[{{\"role\": \"user\", \"content\": \"What does a shadowed firewall rule mean?\"}}])[\"message\"][\"content\"])'\n"
    );
}

/// The evaluation as a table: loss, perplexity, tool calls and the template check per model, then the verdict.
pub fn evaluation_table(e: &crate::api::evaluation::EvaluationStatus) -> String {
    use crate::api::evaluation::ModelFigures;
    let num = |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"));
    let share = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.0}%", v * 100.0));
    let mut out = format!(
        "    {:<9} {:>8} {:>9} {:>9} {:>10} {:>7} {:>9}\n",
        "model", "loss", "vs base", "ppl", "tool calls", "parsed", "template"
    );
    let base = e.base.loss;
    let mut row = |name: &str, f: &ModelFigures, template: &str| {
        let delta = f.loss.zip(base).map(|(l, b)| format!("{:+.4}", l - b));
        out.push_str(&format!(
            "    {name:<9} {:>8} {:>9} {:>9} {:>10} {:>7} {template:>9}\n",
            num(f.loss, 4),
            delta.unwrap_or_else(|| "-".into()),
            num(f.perplexity, 2),
            share(f.tool_call_accuracy),
            share(f.tool_call_parse_rate),
        ));
    };
    row("base", &e.base, "-");
    row("adapter", &e.adapter, "-");
    for g in &e.gguf {
        row(
            g.quantization.as_str(),
            &g.figures,
            if g.template_match { "identical" } else { "DIFFERS" },
        );
    }
    out.push_str(&format!(
        "    {} eval conversations, {} reference tool calls, {:.1} s; gate: {}\n",
        e.examples,
        e.tool_call_examples,
        e.duration_seconds,
        if e.passed {
            "passed".to_string()
        } else {
            format!("FAILED — {}", e.failures.join("; "))
        }
    ));
    out
}
