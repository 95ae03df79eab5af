//! `fireweave-ai dataset`: turns raw Q&A / ShareGPT / OpenAI-messages files (and optionally LLM-synthesized
//! examples) into the trainer's ShareGPT JSONL — validated, scored, deduplicated and split — with nothing
//! lost: every input record ends up kept, rejected with a reason, or recorded as a duplicate of a kept one.

pub mod convert;
pub mod curate;
pub mod dedup;
pub mod load;
pub mod output;
pub mod reason;
pub mod score;
pub mod sources;
pub mod synth;
pub mod validate;

use crate::api::ArtifactRef;
use crate::api::Dataset;
use crate::api::dataset::{DatasetSource, SourceFormat, default_tools};
use crate::contract::document::DocumentError;
use crate::contract::{DatasetResult, layout};
use curate::{Config, InvariantError, Stats};
use load::{Item, LoadError, SourceOptions};
use output::OutputError;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Spec(#[from] DocumentError),
    #[error("{label}: {rejected}")]
    Invalid {
        label: String,
        rejected: crate::contract::document::Rejected,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Synthesis(#[from] synth::SynthError),
    #[error(transparent)]
    Invariant(#[from] InvariantError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("nothing to do: give --spec FILE or --input PATH... --out DIR")]
    Usage,
}

/// Build a training dataset: `--spec dataset.yaml --artifacts DIR` (a Dataset resource, as the operator
/// runs it) or `--input PATH... --out DIR` (files or folders of .json/.jsonl, no manifest needed).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset resource (YAML or JSON; the CR itself or the operator's rendered spec.json).
    #[arg(long, conflicts_with = "input")]
    pub spec: Option<PathBuf>,
    /// Artifact root; the dataset goes to datasets/<namespace>/<name>/<digest>/.
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    /// Input files or folders (instead of --spec).
    #[arg(long, num_args = 1.., requires = "out")]
    pub input: Vec<PathBuf>,
    /// Output folder for --input; the dataset goes to OUT/<digest>/ (and OUT/latest names it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Input format for --input files.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Minimum quality score (0–100) a record needs to be kept (overrides the spec).
    #[arg(long)]
    pub min_score: Option<u8>,
    /// Near-duplicate similarity threshold, 0 disables (overrides the spec).
    #[arg(long)]
    pub near_threshold: Option<f64>,
    /// Share of records held out for evaluation (overrides the spec).
    #[arg(long)]
    pub eval_fraction: Option<f64>,
    /// Seed of the train/eval split (overrides the spec).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write train.openai.jsonl / eval.openai.jsonl (OpenAI messages).
    #[arg(long)]
    pub openai: bool,
    /// Where the JSON result goes when the file exists (Kubernetes reads it into the Pod status).
    #[arg(long, default_value = crate::contract::report::TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Auto,
    Qa,
    Sharegpt,
    Openai,
}

impl From<FormatArg> for SourceFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Auto => SourceFormat::Auto,
            FormatArg::Qa => SourceFormat::Qa,
            FormatArg::Sharegpt => SourceFormat::Sharegpt,
            FormatArg::Openai => SourceFormat::Openai,
        }
    }
}

/// A build: the content-addressed folder and the full curation statistics (what stats.json holds; the
/// step's result, [`DatasetResult`], carries the counts the status shows).
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub artifact: ArtifactRef,
    pub stats: Stats,
}

impl RunResult {
    /// The dataset step's result, as the termination message and the status carry it.
    pub fn result(&self) -> DatasetResult {
        DatasetResult {
            artifact: self.artifact.clone(),
            stats: self.stats.status_counts(),
        }
    }
}

/// Where a Dataset build reads and writes.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The artifact root: the build goes to `datasets/<ns>/<name>/<hex>/` under it, and the result's `uri` is
    /// relative to it.
    pub artifacts: PathBuf,
    /// Relative `sources[].path`s are looked for here too (the manifest's folder).
    pub base_dir: PathBuf,
    /// Also write OpenAI-messages files, whatever `spec.openaiOutput` says.
    pub openai: bool,
}

/// Builds `resource` (a loaded, checked Dataset): the library entry point the dataset step and
/// `fireweave-ai run` call.
pub fn build(resource: &Dataset, opts: &BuildOptions) -> Result<RunResult, DatasetError> {
    let ns = crate::contract::document::namespace_of(resource);
    let name = resource.metadata.name.as_deref().unwrap_or("dataset");
    let plan = Plan::new(
        resource.clone(),
        &opts.base_dir,
        opts.artifacts.join(layout::dataset_builds(&ns, name)),
        opts.artifacts.clone(),
    )?;
    execute(&plan, opts.openai)
}

/// Where and how one run writes.
struct Plan {
    resource: Dataset,
    /// Resolved input files with their options.
    inputs: Vec<(PathBuf, SourceOptions)>,
    /// Folder that receives `<digest>/`.
    parent: PathBuf,
    /// Root that `uri` is relative to.
    root: PathBuf,
}

/// The CLI's build: `--spec` (as the Job runs it) or `--input ... --out` (no manifest), with the flags'
/// overrides applied and checked as the CRD would check them.
pub fn run(args: Args) -> Result<RunResult, DatasetError> {
    let plan = plan(&args)?;
    execute(&plan, args.openai)
}

fn execute(plan: &Plan, openai: bool) -> Result<RunResult, DatasetError> {
    let started = Instant::now();
    let spec = &plan.resource.spec;
    let tools = if spec.tools.is_empty() {
        default_tools()
    } else {
        spec.tools.clone()
    };
    let mut items: Vec<Item> = Vec::new();
    let bar = crate::telemetry::bar(plan.inputs.len() as u64, "dataset");
    for (path, opts) in &plan.inputs {
        bar.set_message(path.display().to_string());
        let loaded = load::load_file(path, opts)?;
        tracing::info!(file = %path.display(), records = loaded.len(), "loaded");
        items.extend(loaded);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(syn) = &spec.synthesis {
        let cache = plan.parent.join("synthesis");
        let generated = synth::run(syn, &tools, &cache, &secret_dir())?;
        tracing::info!(records = generated.len(), "synthesized");
        items.extend(generated);
    }
    let cfg = Config {
        rules: validate::Rules {
            min_answer_chars: spec.filters.min_answer_chars as usize,
            reject_placeholders: spec.filters.reject_placeholders,
            tools: tools.clone(),
        },
        min_score: spec.filters.min_quality_score.min(100) as u8,
        exact: spec.filters.dedup.exact,
        near: spec.filters.dedup.near_duplicate_threshold,
        eval_fraction: spec.split.eval_fraction,
        seed: spec.split.seed,
    };
    if crate::contract::report::fault_injected("dataset") {
        // A panic in the middle of curation, as the overflow in address scoring once was: the step must still
        // end with a reason, never a bare abort.
        panic!("injected fault while curating {} records", items.len());
    }
    let spinner = crate::telemetry::bar(0, "dataset");
    let outcome = curate::curate(&items, &cfg)?;
    spinner.finish_and_clear();
    let written = output::write(&plan.parent, &items, &outcome, &tools, spec.openai_output || openai)?;
    // A pointer for local users and the next pipeline step; the digest in the status is the authority.
    let latest = plan.parent.join("latest");
    let _ = std::fs::write(&latest, format!("{}\n", written.digest.hex()));
    let uri = written
        .dir
        .strip_prefix(&plan.root)
        .unwrap_or(&written.dir)
        .display()
        .to_string();
    let s = &outcome.stats;
    tracing::info!(
        input = s.input, kept = s.kept, rejected = s.rejected, duplicates = s.duplicates, train = s.train,
        eval = s.eval, seconds = started.elapsed().as_secs_f64(), dir = %written.dir.display(), "dataset written"
    );
    Ok(RunResult {
        artifact: ArtifactRef {
            uri,
            digest: written.digest,
        },
        stats: outcome.stats,
    })
}

/// The dataset step as a Job runs it: [`run`], ending as the contract says (the result, or why it failed, in
/// the termination message; a panic is caught and reported the same way).
pub fn main(args: Args) -> Result<DatasetResult, crate::contract::StepFailed> {
    let termination_log = args.termination_log.clone();
    crate::contract::run_step("dataset", &termination_log, || run(args).map(|r| r.result()))
}

fn secret_dir() -> PathBuf {
    std::env::var_os("FIREWEAVE_SECRETS_DIR").map_or_else(|| PathBuf::from("/etc/fireweave/secrets"), PathBuf::from)
}

fn plan(args: &Args) -> Result<Plan, DatasetError> {
    let (mut resource, base_dir, parent, root) = if let Some(spec_path) = &args.spec {
        let resource: Dataset = crate::contract::document::load(spec_path)?;
        let base = spec_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let ns = crate::contract::document::namespace_of(&resource);
        let name = resource.metadata.name.clone().unwrap_or_default();
        let parent = args.artifacts.join(layout::dataset_builds(&ns, &name));
        (resource, base, parent, args.artifacts.clone())
    } else if let (false, Some(out)) = (args.input.is_empty(), &args.out) {
        let sources = args
            .input
            .iter()
            .map(|p| DatasetSource {
                path: Some(p.display().to_string()),
                format: args.format.into(),
                ..Default::default()
            })
            .collect();
        let resource = Dataset::new(
            "dataset",
            crate::api::DatasetSpec {
                sources,
                synthesis: None,
                filters: Default::default(),
                split: Default::default(),
                tools: default_tools(),
                openai_output: false,
                artifact_retention: Default::default(),
            },
        );
        (resource, PathBuf::from("."), out.clone(), out.clone())
    } else {
        return Err(DatasetError::Usage);
    };
    let spec = &mut resource.spec;
    if let Some(v) = args.min_score {
        spec.filters.min_quality_score = v.into();
    }
    if let Some(v) = args.near_threshold {
        spec.filters.dedup.near_duplicate_threshold = v;
    }
    if let Some(v) = args.eval_fraction {
        spec.split.eval_fraction = v;
    }
    if let Some(v) = args.seed {
        spec.split.seed = v;
    }
    // The flags' overrides are checked as the CRD checks the spec (the same loader the Job's spec.json took).
    let label = args
        .spec
        .as_deref()
        .unwrap_or(Path::new("--input"))
        .display()
        .to_string();
    let value = serde_json::to_value(&resource).map_err(|e| DatasetError::Invalid {
        label: label.clone(),
        rejected: crate::contract::document::Rejected {
            object: None,
            errors: vec![crate::api::validate::FieldError {
                field: String::new(),
                message: e.to_string(),
            }],
        },
    })?;
    crate::contract::document::check(&value).map_err(|rejected| DatasetError::Invalid { label, rejected })?;
    Plan::new(resource, &base_dir, parent, root)
}

impl Plan {
    fn new(resource: Dataset, base_dir: &Path, parent: PathBuf, root: PathBuf) -> Result<Self, DatasetError> {
        let spec = &resource.spec;
        let mut inputs = Vec::new();
        for src in &spec.sources {
            let opts = SourceOptions {
                format: src.format,
                topic: src.topic.clone(),
                max_record_bytes: usize::try_from(spec.filters.max_record_bytes).unwrap_or(usize::MAX),
            };
            for file in sources::resolve(src, base_dir, &root)? {
                inputs.push((file, opts.clone()));
            }
        }
        Ok(Plan {
            resource,
            inputs,
            parent,
            root,
        })
    }
}
