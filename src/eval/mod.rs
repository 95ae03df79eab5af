//! `fireweave-ai evaluate`: the step after quantization (same Job, same image; locally a step of
//! `fireweave-ai run`). On the Dataset's eval split it measures the base model, the trained adapter and every
//! exported GGUF, proves the chat template the same from training to serving, and judges the result against
//! the TrainingRun's gate:
//!
//! - loss: mean cross-entropy over assistant tokens with the training masks exactly — the trainer's figures
//!   for the base model and the adapter (its report), llama.cpp's for each GGUF (the engine that serves it);
//! - tool calls: greedy generation through the served chat format for every reference tool call, judged by
//!   [`tools::judge`], for each GGUF and for the base model (converted to Q8_0 with the same template);
//! - template: each eval prompt as the trainer tokenized it, and as the built-in server renders it from the
//!   GGUF's own `tokenizer.chat_template` and tokenizes it with llama.cpp, must be the same token ids — and a
//!   prefix of the trained sequence. (The Ollama Modelfile template is the chat format's Go twin; the test
//!   suite renders it with Ollama's own template package against the same conversations.)

pub mod gate;
pub mod llama;
pub mod tools;

use std::path::{Path, PathBuf};
use std::time::Instant;

use kube::ResourceExt;

use crate::api::TrainingRun;
use crate::api::evaluation::{EvaluationStatus, GgufEvaluation, ModelFigures};
use crate::artifact;
use crate::chat::{ChatTemplate, Message, Role, TemplateError};
use crate::contract::document::namespace_of;
use crate::contract::layout::{self, RunPart};
use crate::train::data::{self, Conversation, Encoder};
use crate::train::inputs::{self, DatasetHints};
use llama::{Gguf, LlamaError};

/// Longest greedy answer generated for one reference tool call.
const TOOL_CALL_TOKENS: usize = 160;

#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// The TrainingRun: spec.json as the operator renders it, or a manifest (YAML or JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// Artifact root: the dataset build, the run's report and GGUF files are read from it.
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    /// Dataset folder (eval.jsonl) overriding the operator's choice, as for `train`.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// CPU threads for llama.cpp (default: all cores).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Where Kubernetes reads the result (or the reason it failed); written when the file exists.
    #[arg(long, default_value = crate::contract::report::TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

/// What an evaluation needs besides its TrainingRun.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub artifacts: PathBuf,
    /// Relative `baseModel.path`s are also looked for here (the manifest's folder).
    pub base_dir: PathBuf,
    pub dataset: Option<PathBuf>,
    pub threads: i32,
}

impl EvaluateArgs {
    pub fn options(&self) -> EvalOptions {
        EvalOptions {
            artifacts: self.artifacts.clone(),
            base_dir: self.spec.parent().map(Path::to_path_buf).unwrap_or_default(),
            dataset: self.dataset.clone(),
            threads: self.threads.unwrap_or_else(default_threads),
        }
    }
}

pub fn default_threads() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Input(#[from] inputs::InputError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Llama(#[from] LlamaError),
    #[error(transparent)]
    Io(#[from] artifact::IoError),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{path}: {message}")]
    Report { path: PathBuf, message: String },
    #[error("{path}: no GGUF file (the quantize step writes it before the evaluation)")]
    MissingGguf { path: PathBuf },
}

/// The evaluate step as a Job runs it.
pub fn main(args: &EvaluateArgs) -> Result<(), crate::contract::StepFailed> {
    crate::contract::run_step("evaluate", &args.termination_log, || {
        let tr: TrainingRun = crate::contract::document::load(&args.spec).map_err(crate::train::TrainError::from)?;
        evaluate(&tr, &args.options())
    })
    .map(|_| ())
}

/// Evaluates a run whose train and quantize steps are done: the library entry point the evaluate step and
/// `fireweave-ai run` call.
pub fn evaluate(tr: &TrainingRun, opts: &EvalOptions) -> Result<EvaluationStatus, EvalError> {
    let started = Instant::now();
    let (ns, name) = (namespace_of(tr), tr.name_any());
    let spec = &tr.spec;
    let system = spec.system_prompt.as_str();
    let dataset = inputs::dataset(tr, &opts.artifacts, &DatasetHints::from_env(opts.dataset.clone()))?;
    let model_in = inputs::base_model(tr, &opts.artifacts, &opts.base_dir)?;
    let tokenizer_path = model_in.dir.join("tokenizer.json");
    let tokenizer =
        tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| crate::train::TrainError::Tokenizer {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
    let (_, template) = crate::train::run::training_template(&model_in.dir)?;
    let convs = eval_conversations(&dataset.dir, spec.evaluation.max_examples as usize)?;
    let encoder = Encoder {
        template: &template,
        tokenizer: &tokenizer,
        max_len: spec.hyperparameters.max_seq_length as usize,
        system,
    };
    let (examples, _) = encoder.encode_all(&convs)?;
    let prompts = trainer_prompts(&encoder, &convs)?;
    let cases: Vec<tools::ToolCase> = convs
        .iter()
        .flat_map(|c| tools::cases(&data::with_system(c, system).messages, &c.tools))
        .collect();

    let report = opts.artifacts.join(layout::run_part(&ns, &name, RunPart::Report));
    let (base_loss, adapter_loss) = trainer_losses(&report.join("metrics.json"))?;
    let scratch = Scratch::new()?;
    let clock = Instant::now();
    let base_gguf = base_as_gguf(&model_in.dir, template.source(), &scratch.0)?;
    let base_convert = clock.elapsed().as_secs_f64();
    let base = Gguf::load(&base_gguf, opts.threads)?;
    // Generation stops as soon as an answer cannot be a call any more: prose is judged by its start.
    let base_run = base.measure(
        &[],
        &tool_prompts(&base, &cases, system)?,
        TOOL_CALL_TOKENS,
        crate::serve::text::may_be_tool_call,
    )?;
    let (base_acc, base_parse) = tool_figures(&base_run.answers, &cases);
    drop(base);

    let mut ggufs = Vec::new();
    let mut timing = Vec::new();
    for q in &spec.export.gguf {
        let path = opts.artifacts.join(layout::gguf_file(&ns, &name, q.as_str()));
        if !path.is_file() {
            return Err(EvalError::MissingGguf { path });
        }
        let digest = artifact::file_digest(&path)?;
        let clock = Instant::now();
        let g = Gguf::load(&path, opts.threads)?;
        let load_seconds = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let template_match = template_matches(&g, &prompts, system)?;
        let template_seconds = clock.elapsed().as_secs_f64();
        let run = g.measure(
            &examples,
            &tool_prompts(&g, &cases, system)?,
            TOOL_CALL_TOKENS,
            crate::serve::text::may_be_tool_call,
        )?;
        let loss = run.loss.mean();
        let (acc, parse) = tool_figures(&run.answers, &cases);
        timing.push(serde_json::json!({
            "quantization": q, "file": path, "loadSeconds": load_seconds, "lossSeconds": run.loss_seconds,
            "templateSeconds": template_seconds, "toolSeconds": run.answer_seconds, "toolAnswers": run.answers,
            "tokens": examples.iter().map(|e| e.ids.len()).sum::<usize>(),
        }));
        tracing::info!(quantization = %q, ?loss, template_match, tool_call_accuracy = ?acc, "evaluated");
        ggufs.push(GgufEvaluation {
            quantization: *q,
            digest,
            figures: figures(loss, acc, parse),
            loss_increase: loss.zip(adapter_loss).map(|(l, a)| l - a),
            template_match,
        });
    }
    let mut status = EvaluationStatus {
        passed: false,
        failures: Vec::new(),
        base: figures(base_loss, base_acc, base_parse),
        adapter: figures(adapter_loss, None, None),
        gguf: ggufs,
        examples: convs.len() as u32,
        tool_call_examples: cases.len() as u32,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    status.failures = gate::failures(&spec.evaluation.gate, &status);
    status.passed = status.failures.is_empty();
    write_report(&report, &status)?;
    // For benches/eval_bench.py: how long each loss pass took, and the exact token ids it decoded, so a peer
    // can decode the same sequences.
    let bench = serde_json::json!({
        "ggufs": timing,
        "base": {
            "convertSeconds": base_convert, "toolSeconds": base_run.answer_seconds, "toolCases": cases.len(),
            "toolAnswers": base_run.answers,
        },
        "sequences": examples.iter().map(|e| &e.ids).collect::<Vec<_>>(),
        "seconds": status.duration_seconds,
    });
    artifact::write_atomic(
        &report.join("evaluation-timing.json"),
        &serde_json::to_vec(&bench).unwrap_or_default(),
    )?;
    Ok(status)
}

fn figures(loss: Option<f64>, accuracy: Option<f64>, parse_rate: Option<f64>) -> ModelFigures {
    ModelFigures {
        loss,
        perplexity: loss.map(f64::exp),
        tool_call_accuracy: accuracy,
        tool_call_parse_rate: parse_rate,
    }
}

/// The first `max` conversations of the build's eval split (the ones the trainer's eval loss uses too).
pub fn eval_conversations(dataset: &Path, max: usize) -> Result<Vec<Conversation>, EvalError> {
    let path = dataset.join("eval.jsonl");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut convs = data::read_jsonl(&path)?;
    convs.truncate(max);
    Ok(convs)
}

/// For each conversation that ends in an assistant turn: the prompt before that turn as the trainer rendered
/// and tokenized it, the conversation it came from, and the full trained token ids it must begin.
struct Prompt {
    messages: Vec<Message>,
    tools: Vec<serde_json::Value>,
    ids: Vec<i64>,
    trained: Vec<i64>,
}

fn trainer_prompts(encoder: &Encoder<'_>, convs: &[Conversation]) -> Result<Vec<Prompt>, EvalError> {
    let mut out = Vec::new();
    for (i, conv) in convs.iter().enumerate() {
        let Some(last) = conv.messages.last().filter(|m| m.role == Role::Assistant) else {
            continue;
        };
        let _ = last;
        let with = data::with_system(conv, encoder.system);
        let prompt = &with.messages[..with.messages.len() - 1];
        let text = encoder.template.render(prompt, &conv.tools, true)?;
        let ids = encoder
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| data::DataError::Tokenizer(format!("eval example {i}: {e}")))?
            .get_ids()
            .iter()
            .map(|&t| i64::from(t))
            .collect();
        out.push(Prompt {
            messages: conv.messages[..conv.messages.len() - 1].to_vec(),
            tools: conv.tools.clone(),
            ids,
            trained: encoder.label(conv, i)?.ids,
        });
    }
    Ok(out)
}

/// Whether the built-in server, rendering each request from the GGUF's own chat template, sends the model
/// exactly the token ids training used — and those are where the trained sequence begins.
fn template_matches(g: &Gguf, prompts: &[Prompt], system: &str) -> Result<bool, EvalError> {
    let Some(source) = g.chat_template() else {
        return Ok(false);
    };
    let (bos, eos) = g.bos_eos();
    let served = ChatTemplate::new(&source, &bos, &eos)?;
    let system = (!system.is_empty()).then_some(system);
    for (i, p) in prompts.iter().enumerate() {
        let text = crate::chat::server_prompt(&served, system, &p.messages, &p.tools)?;
        let ids = g.tokenize(&text);
        if ids != p.ids || !p.trained.starts_with(&p.ids) {
            let at = ids.iter().zip(&p.ids).take_while(|(a, b)| a == b).count();
            tracing::warn!(
                example = i,
                first_difference = at,
                served = ids.len(),
                trained = p.ids.len(),
                "an eval prompt tokenizes differently when served"
            );
            return Ok(false);
        }
    }
    Ok(true)
}

/// Each tool-call case's prompt as the built-in server renders the request from the GGUF's own template and
/// tokenizes it.
fn tool_prompts(g: &Gguf, cases: &[tools::ToolCase], system: &str) -> Result<Vec<Vec<i64>>, EvalError> {
    if cases.is_empty() {
        return Ok(Vec::new());
    }
    let source = g.chat_template().unwrap_or_default();
    let (bos, eos) = g.bos_eos();
    let served = ChatTemplate::new(&source, &bos, &eos)?;
    let system = (!system.is_empty()).then_some(system);
    cases
        .iter()
        .map(|case| Ok(g.tokenize(&crate::chat::server_prompt(&served, system, &case.prompt, &case.tools)?)))
        .collect()
}

/// Tool-call accuracy and parse rate of the greedy answers; `None` without reference calls.
fn tool_figures(answers: &[String], cases: &[tools::ToolCase]) -> (Option<f64>, Option<f64>) {
    if cases.is_empty() {
        return (None, None);
    }
    let (mut correct, mut parsed) = (0usize, 0usize);
    for (answer, case) in answers.iter().zip(cases) {
        let v = tools::judge(answer, case);
        correct += usize::from(v.correct);
        parsed += usize::from(v.parsed);
    }
    let n = cases.len() as f64;
    (Some(correct as f64 / n), Some(parsed as f64 / n))
}

/// The trainer's eval losses: the base model's (the evaluation before the first step) and the adapter's
/// (the last one), from the run's report.
fn trainer_losses(metrics: &Path) -> Result<(Option<f64>, Option<f64>), EvalError> {
    let bad = |message: String| EvalError::Report {
        path: metrics.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(metrics).map_err(|e| bad(format!("the train step's report: {e}")))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let evals = report["evals"].as_array().cloned().unwrap_or_default();
    // JSON has no NaN: a trainer whose loss became NaN writes `null`. An eval that ran without a number is a
    // NaN loss (the gate names the run diverged), not a missing figure that no check looks at.
    let loss_at = |e: Option<&serde_json::Value>| e.map(|e| e["loss"].as_f64().unwrap_or(f64::NAN));
    let base = loss_at(evals.iter().find(|e| e["step"] == 0));
    Ok((base, loss_at(evals.last())))
}

/// A temporary folder removed when dropped (also on error), for the base model's GGUF.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, EvalError> {
        let dir = std::env::temp_dir().join(format!("fireweave-eval-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(artifact::io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(artifact::io(&dir))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The base model as a Q8_0 GGUF carrying the training template, so its tool calls are judged in the format
/// the fine-tune is served in. The base folder is linked, not copied; only its tokenizer config is rewritten.
fn base_as_gguf(model_dir: &Path, template: &str, scratch: &Path) -> Result<PathBuf, EvalError> {
    let base = scratch.join("base");
    std::fs::create_dir_all(&base).map_err(artifact::io(&base))?;
    // A link's relative target resolves from the link's folder, not from where we run: `--artifacts ./x`
    // made every link dangle.
    let model_dir = &std::path::absolute(model_dir).map_err(artifact::io(model_dir))?;
    for entry in std::fs::read_dir(model_dir).map_err(artifact::io(model_dir))?.flatten() {
        let name = entry.file_name();
        let target = base.join(&name);
        if name == "tokenizer_config.json" || name == "chat_template.jinja" {
            std::fs::copy(entry.path(), &target).map_err(artifact::io(&target))?;
        } else {
            std::os::unix::fs::symlink(entry.path(), &target).map_err(artifact::io(&target))?;
        }
    }
    crate::train::export::set_chat_template(&base, template).map_err(|e| EvalError::Report {
        path: base.clone(),
        message: e.to_string(),
    })?;
    let ck = crate::hf::Checkpoint::open(&base).map_err(crate::train::TrainError::from)?;
    let path = scratch.join("base-Q8_0.gguf");
    let request = crate::gguf::convert::Request {
        mix: crate::gguf::Mix::Q8_0,
        path: path.clone(),
    };
    crate::gguf::convert::convert(&ck, "base", &[request], &|_| {})?;
    Ok(path)
}

/// `report/evaluation.json` and a bar chart of the losses, `report/evaluation.svg`.
fn write_report(dir: &Path, status: &EvaluationStatus) -> Result<(), EvalError> {
    let json = serde_json::to_vec_pretty(status).unwrap_or_default();
    artifact::write_atomic(&dir.join("evaluation.json"), &json)?;
    artifact::write_atomic(&dir.join("evaluation.svg"), loss_chart(status).as_bytes())?;
    Ok(())
}

/// Eval loss per model as horizontal bars, base first, with the gate's verdict in the title.
pub fn loss_chart(s: &EvaluationStatus) -> String {
    let mut rows: Vec<(String, Option<f64>)> = vec![("base".into(), s.base.loss), ("adapter".into(), s.adapter.loss)];
    rows.extend(s.gguf.iter().map(|g| (g.quantization.to_string(), g.figures.loss)));
    let max = rows.iter().filter_map(|r| r.1).fold(0.0f64, f64::max).max(1e-9);
    let (w, row_h, left) = (520.0, 26.0, 90.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"8\" y=\"18\">eval loss (nats/token) — gate {}</text>\n",
        if s.passed { "passed" } else { "FAILED" }
    );
    for (i, (label, loss)) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let bar = loss.map_or(0.0, |l| (w - left - 70.0) * l / max);
        svg.push_str(&format!(
            "<text x=\"8\" y=\"{:.0}\">{label}</text><rect x=\"{left}\" y=\"{:.0}\" width=\"{bar:.1}\" height=\"16\" fill=\"#4a7ab5\"/>\
             <text x=\"{:.1}\" y=\"{:.0}\">{}</text>\n",
            y + 13.0,
            y,
            left + bar + 4.0,
            y + 13.0,
            loss.map_or_else(|| "n/a".into(), |l| format!("{l:.4}"))
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    /// A trainer whose eval loss became NaN writes `null` (JSON has no NaN); the gate must see a NaN, which it
    /// names as a diverged run, not a missing figure.
    #[test]
    fn a_null_eval_loss_is_nan_and_no_eval_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.json");
        std::fs::write(
            &metrics,
            r#"{"evals": [{"step": 0, "loss": 3.2}, {"step": 3, "loss": null}]}"#,
        )
        .unwrap();
        let (base, adapter) = super::trainer_losses(&metrics).unwrap();
        assert_eq!(base, Some(3.2));
        assert!(adapter.is_some_and(f64::is_nan), "{adapter:?}");
        std::fs::write(&metrics, r#"{"evals": []}"#).unwrap();
        assert_eq!(super::trainer_losses(&metrics).unwrap(), (None, None));
    }
}
