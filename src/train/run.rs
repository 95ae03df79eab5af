//! `fireweave-ai train`: the training loop and its edges (inputs, resume, outputs, progress).

use super::checkpoint::{self, EvalPoint, LossPoint, TrainState};
use super::data::{self, Encoder, Example};
use super::export;
use super::inputs::{self, DatasetHints};
use super::lora::LoraStore;
use super::metrics::TrainMetrics;
use super::model::{Llama, LossSum};
use super::optim::{AdamW, learning_rate};
use super::{report, spec};
use crate::api::training_run::BaseQuantization;
use crate::api::{ArtifactRef, TrainingRun};
use crate::artifact;
use crate::chat::{ChatFormat, ChatTemplate};
use crate::contract::layout::RunPart;
use crate::contract::{TrainResult, fingerprint};
use crate::hf::Checkpoint;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The TrainingRun: spec.json as the operator renders it, or a manifest (YAML or JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// Artifact root: datasets and cached models are read from it, runs/<namespace>/<name>/ written to it.
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    /// Dataset folder (train.jsonl, optionally eval.jsonl). Default: the build the operator names in
    /// FIREWEAVE_DATASET_URI or the spec.json annotation, else the newest build of spec.datasetRef.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// auto (CUDA when available), cpu or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Address of the Prometheus endpoint (/metrics) the operator scrapes for status.progress.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,
    /// No terminal progress bar (log lines remain).
    #[arg(long)]
    pub no_progress: bool,
    /// Where Kubernetes reads the result from; written only when the file exists.
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Input(#[from] inputs::InputError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointIoError),
    #[error(transparent)]
    Io(#[from] artifact::IoError),
    #[error(transparent)]
    Load(#[from] super::weights::LoadError),
    #[error(transparent)]
    Hf(#[from] crate::hf::CheckpointError),
    #[error(transparent)]
    Template(#[from] crate::chat::TemplateError),
    #[error(transparent)]
    Format(#[from] crate::chat::UnknownFormat),
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("--device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Device(String),
    #[error(
        "--device {device}: libtorch sees {count} CUDA device(s) here (CUDA kernels {support}); use --device cpu or run on a GPU node"
    )]
    NoCudaDevice {
        device: String,
        count: i64,
        support: &'static str,
    },
    #[error("{dir}: no trainable examples (every conversation lacks assistant tokens after truncation)")]
    NoExamples { dir: PathBuf },
    #[error("{0}")]
    Bench(String),
    #[error("stopped by SIGTERM after step {step}; checkpoint {checkpoint} holds it, a restart resumes from there")]
    Terminated { step: usize, checkpoint: PathBuf },
}

/// Set by SIGTERM (a preempted or drained Pod) while the training loop runs: the loop checkpoints at the end of
/// the current step and stops, so the replacement Pod loses nothing. Outside the loop SIGTERM ends the process
/// as usual.
static STOP: AtomicBool = AtomicBool::new(false);
static IN_LOOP: AtomicBool = AtomicBool::new(false);

fn watch_sigterm() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            term.recv().await;
            if IN_LOOP.load(Ordering::SeqCst) {
                tracing::warn!("SIGTERM: checkpointing after this step, then stopping");
                STOP.store(true, Ordering::SeqCst);
            } else {
                std::process::exit(143);
            }
        });
    });
}

pub fn parse_device(s: &str) -> Result<Device, TrainError> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        "auto" => Ok(Device::cuda_if_available()),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| TrainError::Device(other.to_owned())),
    }
}

/// [`parse_device`], then refused at once when it names a CUDA device this process cannot use (no GPU, or a
/// libtorch without CUDA kernels): otherwise the first tensor moved there fails deep inside libtorch.
pub fn usable_device(s: &str) -> Result<Device, TrainError> {
    let device = parse_device(s)?;
    if let Device::Cuda(index) = device {
        let count = tch::Cuda::device_count();
        if index as i64 >= count {
            return Err(TrainError::NoCudaDevice {
                device: s.to_owned(),
                count,
                support: crate::doctor::cuda_support(),
            });
        }
    }
    Ok(device)
}

/// bf16 halves memory and runs on tensor cores; on the CPU f32 is both faster and exact for tests.
pub fn compute_kind(device: Device) -> Kind {
    if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }
}

/// Optimizer steps per epoch and in total: a step consumes `accum` micro-batches; an epoch's last step may
/// take fewer.
pub fn plan(batches_per_epoch: usize, accum: usize, epochs: usize, max_steps: Option<usize>) -> (usize, usize) {
    let per_epoch = batches_per_epoch.div_ceil(accum).max(1);
    let total = per_epoch * epochs;
    (per_epoch, max_steps.map_or(total, |m| m.min(total)))
}

/// A micro-batch collated into [batch, seq] ids and targets on `device`.
pub(super) fn tensors(batch: &[&Example], device: Device) -> (Tensor, Tensor) {
    let (ids, targets, b, s) = data::collate(batch);
    (
        Tensor::from_slice(&ids).view([b, s]).to_device(device),
        Tensor::from_slice(&targets).view([b, s]).to_device(device),
    )
}

/// The template a run trains with: the tools-capable template of the base model's chat format (read from the
/// model's own template), with the model's special tokens. The same template goes into the merged checkpoint
/// and from there into every GGUF, and its Ollama twin into the Modelfile: one format from training to
/// serving, tool calls included, even for a model whose own template has no tools branch.
pub fn training_template(model_dir: &Path) -> Result<(ChatFormat, ChatTemplate), TrainError> {
    let own = ChatTemplate::from_model_dir(model_dir)?;
    let field = format!("spec.baseModel ({}: its chat template)", model_dir.display());
    let format = ChatFormat::of_template(own.source(), &field)?;
    Ok((format, format.template(own.bos_token(), own.eos_token())?))
}

/// Token-weighted mean loss over a dataset (batched by length, no gradient).
pub fn eval_loss(model: &Llama, lora: &LoraStore, examples: &[Example], batch: usize) -> Option<f64> {
    let mut order: Vec<&Example> = examples.iter().collect();
    order.sort_by_key(|e| e.ids.len());
    let mut total = LossSum::default();
    for chunk in order.chunks(batch.max(1)) {
        let (ids, targets) = tensors(chunk, model.device);
        let l = model.loss_sum(&ids, &targets, Some(lora));
        total.sum += l.sum;
        total.tokens += l.tokens;
    }
    (total.tokens > 0).then(|| total.sum / total.tokens as f64)
}

fn artifact_ref(root: &Path, rel: &Path) -> Result<ArtifactRef, TrainError> {
    Ok(ArtifactRef {
        uri: rel.to_string_lossy().into_owned(),
        digest: artifact::folder_digest(&root.join(rel))?,
    })
}

/// Logs a line without tearing the progress bar.
fn log_with(bar: Option<&indicatif::ProgressBar>, f: impl FnOnce()) {
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// What a training run needs besides its TrainingRun: where things are and how to run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Artifact root: datasets and cached models are read from it, runs/<namespace>/<name>/ written to it.
    pub artifacts: PathBuf,
    /// Relative `baseModel.path`s are also looked for here (the manifest's folder).
    pub base_dir: PathBuf,
    /// A dataset folder that overrides the operator's choice (`--dataset`).
    pub dataset: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// libtorch intra-op threads (None: libtorch's choice).
    pub threads: Option<i32>,
    /// Address of the Prometheus endpoint; port 0 lets the OS pick one.
    pub metrics_addr: String,
    /// A terminal progress bar (when stderr is a terminal).
    pub progress: bool,
}

impl TrainOptions {
    /// A run on this machine: automatic device, metrics on a free local port, a progress bar.
    pub fn local(artifacts: PathBuf) -> Self {
        TrainOptions {
            artifacts,
            base_dir: PathBuf::from("."),
            dataset: None,
            device: "auto".into(),
            threads: None,
            metrics_addr: "127.0.0.1:0".into(),
            progress: true,
        }
    }
}

impl TrainArgs {
    pub fn options(&self) -> TrainOptions {
        TrainOptions {
            artifacts: self.artifacts.clone(),
            base_dir: self.spec.parent().map(Path::to_path_buf).unwrap_or_default(),
            dataset: self.dataset.clone(),
            device: self.device.clone(),
            threads: self.threads,
            metrics_addr: self.metrics_addr.clone(),
            progress: !self.no_progress,
        }
    }
}

/// Trains `tr` (a loaded, checked TrainingRun): the library entry point the train step and
/// `fireweave-ai run` call.
pub fn train(tr: &TrainingRun, opts: &TrainOptions) -> Result<TrainResult, TrainError> {
    let args = opts;
    let hp = &tr.spec.hyperparameters;
    let run_rel = spec::run_dir(tr);
    let run_dir = args.artifacts.join(&run_rel);
    let device = usable_device(&args.device)?;
    let kind = compute_kind(device);
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let nf4 = tr.spec.base_quantization == BaseQuantization::Nf4;
    let recompute = spec::recompute_layers(tr);
    if nf4 && !device.is_cuda() {
        tracing::warn!(
            "baseQuantization nf4 on the CPU: correct but slow (weights are dequantized at every use); use none for CPU runs"
        );
    }

    let dataset = inputs::dataset(tr, &args.artifacts, &DatasetHints::from_env(args.dataset.clone()))?;
    let model_in = inputs::base_model(tr, &args.artifacts, &args.base_dir)?;
    tracing::info!(dataset = %dataset.dir.display(), digest = %dataset.digest, from = dataset.source,
        model = %model_in.dir.display(), "inputs");

    let tokenizer_path = model_in.dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| TrainError::Tokenizer {
        path: tokenizer_path.clone(),
        message: e.to_string(),
    })?;
    let (format, template) = training_template(&model_in.dir)?;
    tracing::info!(%format, "chat format");
    let encoder = Encoder {
        template: &template,
        tokenizer: &tokenizer,
        max_len: hp.max_seq_length as usize,
        system: &tr.spec.system_prompt,
    };
    let (train, train_stats) = encoder.encode_all(&data::read_jsonl(&dataset.dir.join("train.jsonl"))?)?;
    let eval_path = dataset.dir.join("eval.jsonl");
    let (eval, eval_stats) = if eval_path.is_file() {
        let mut convs = data::read_jsonl(&eval_path)?;
        // The evaluation step judges the same conversations: its base and adapter figures are these losses.
        if tr.spec.evaluation.enabled {
            convs.truncate(tr.spec.evaluation.max_examples as usize);
        }
        encoder.encode_all(&convs)?
    } else {
        Default::default()
    };
    if train.is_empty() {
        return Err(TrainError::NoExamples { dir: dataset.dir });
    }
    tracing::info!(
        examples = train_stats.examples,
        truncated = train_stats.truncated_examples,
        dropped_turns = train_stats.dropped_turns,
        hard_truncated = train_stats.hard_truncated,
        skipped = train_stats.skipped_no_labels,
        tokens = train_stats.tokens,
        trained_tokens = train_stats.trained_tokens,
        eval_examples = eval_stats.examples,
        "dataset encoded"
    );

    let ck = Checkpoint::open(&model_in.dir)?;
    let load_started = Instant::now();
    let model = Llama::load(&ck, kind, device, nf4)?;
    tch::manual_seed(hp.seed as i64);
    let mut lora = LoraStore::new(&model, &tr.spec.lora);
    let mut opt = AdamW::new(&lora.parameters(), hp.weight_decay);
    let (batch, accum) = (hp.batch_size as usize, hp.gradient_accumulation as usize);
    let (per_epoch, total) = plan(
        train.len().div_ceil(batch),
        accum,
        hp.epochs as usize,
        hp.max_steps.map(|m| m as usize),
    );
    tracing::info!(
        ?device,
        ?kind,
        nf4,
        recompute,
        weights_mib = model.weight_bytes() >> 20,
        load_s = load_started.elapsed().as_secs_f64(),
        trainable = lora.num_parameters(),
        steps = total,
        steps_per_epoch = per_epoch,
        "model ready"
    );

    // A checkpoint made from other inputs is never resumed; one whose export list alone changed is.
    let inputs_id = fingerprint::trained(&tr.spec, &dataset.digest).to_string();
    let ck_root = run_dir.join(RunPart::Checkpoints.folder());
    let mut state = TrainState {
        rng_seed: hp.seed,
        inputs: inputs_id.clone(),
        ..Default::default()
    };
    if let Some((dir, saved)) = checkpoint::latest_valid(&ck_root, &inputs_id) {
        checkpoint::restore(&dir, &saved, &mut lora, &mut opt)?;
        tracing::info!(checkpoint = %dir.display(), step = saved.step, "resumed");
        state = saved;
    }

    let metrics = TrainMetrics::new();
    metrics.serve(&args.metrics_addr);
    metrics.total_steps.set(total as i64);
    metrics.step.set(state.step as i64);
    let bar = (args.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(state.step as u64);
        b
    });

    if state.step == 0
        && state.evals.is_empty()
        && let Some(l) = eval_loss(&model, &lora, &eval, batch)
    {
        // The base model's eval loss: the point every later evaluation is compared with.
        metrics.eval_loss.set(l);
        log_with(bar.as_ref(), || {
            tracing::info!(eval_loss = l, "evaluated the base model")
        });
        state.evals.push(EvalPoint {
            epoch: 0,
            step: 0,
            loss: l,
        });
    }

    watch_sigterm();
    IN_LOOP.store(true, Ordering::SeqCst);
    let lengths: Vec<usize> = train.iter().map(|e| e.ids.len()).collect();
    let mut epoch_cache: Option<(usize, Vec<Vec<usize>>)> = None;
    let started = Instant::now();
    let start_step = state.step;
    let mut run_tokens = 0u64;
    let params = lora.parameters();
    while state.step < total {
        let step = state.step;
        if step == start_step && crate::contract::report::fault_injected("train") {
            // A real libtorch error through tch's panicking API, as a shape bug or an out-of-memory would raise.
            let a = Tensor::zeros([2, 3], (Kind::Float, device));
            let _ = a.matmul(&Tensor::zeros([4, 5], (Kind::Float, device)));
        }
        let epoch = step / per_epoch;
        if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_cache = Some((epoch, data::epoch_batches(&lengths, batch, hp.seed, epoch)));
        }
        let batches = &epoch_cache.as_ref().expect("set above").1;
        let first = (step % per_epoch) * accum;
        let group = &batches[first.min(batches.len())..(first + accum).min(batches.len())];
        // Normalize by the trained tokens of the whole accumulated batch, so the loss is a true token mean.
        let group_tokens: usize = group.iter().flatten().map(|&i| train[i].trained_tokens()).sum();
        let scale = 1.0 / group_tokens.max(1) as f64;
        let mut loss_sum = 0.0;
        for (m, micro) in group.iter().enumerate() {
            let refs: Vec<&Example> = micro.iter().map(|&i| &train[i]).collect();
            let (ids, targets) = tensors(&refs, device);
            let seed = (hp.seed as i64).wrapping_add((step * 1024 + m) as i64);
            loss_sum += model
                .forward_backward(&ids, &targets, &lora, scale, recompute, seed)
                .sum;
            run_tokens += refs.iter().map(|e| e.ids.len() as u64).sum::<u64>();
        }
        let lr = learning_rate(hp.learning_rate, step, hp.warmup_steps as usize, total, hp.lr_scheduler);
        let grad_norm = opt.step_clipped(&params, lr, hp.max_grad_norm);
        let loss = loss_sum * scale;
        state.step += 1;
        state.epoch = state.step / per_epoch;
        state.micro_batch = (state.step % per_epoch) * accum;
        state.tokens += group.iter().flatten().map(|&i| train[i].ids.len() as u64).sum::<u64>();
        state.losses.push(LossPoint {
            step: state.step,
            loss,
            lr,
        });

        let elapsed = started.elapsed().as_secs_f64();
        let tps = run_tokens as f64 / elapsed.max(1e-9);
        let eta = elapsed / (state.step - start_step) as f64 * (total - state.step) as f64;
        let epoch_f = state.step as f64 / per_epoch as f64;
        metrics.step.set(state.step as i64);
        metrics.epoch.set(epoch_f);
        metrics.loss.set(loss);
        metrics.learning_rate.set(lr);
        metrics.tokens_per_second.set(tps);
        metrics.eta_seconds.set(eta);
        match &bar {
            Some(b) => {
                b.set_position(state.step as u64);
                b.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s"));
            }
            None => tracing::info!(
                step = state.step,
                total,
                epoch = epoch_f,
                loss,
                lr,
                grad_norm,
                tokens_per_second = tps.round(),
                eta_s = eta.round(),
                "step"
            ),
        }

        if (state.step.is_multiple_of(per_epoch) || state.step == total)
            && let Some(l) = eval_loss(&model, &lora, &eval, batch)
        {
            metrics.eval_loss.set(l);
            log_with(bar.as_ref(), || {
                tracing::info!(epoch = epoch_f, step = state.step, eval_loss = l, "evaluated")
            });
            state.evals.push(EvalPoint {
                epoch: state.step.div_ceil(per_epoch),
                step: state.step,
                loss: l,
            });
        }
        let stop = STOP.load(Ordering::SeqCst);
        if stop || state.step.is_multiple_of(tr.spec.checkpoint_every_steps as usize) || state.step == total {
            let dir = checkpoint::save(&ck_root, &lora, &opt, state.clone(), 2)?;
            log_with(
                bar.as_ref(),
                || tracing::info!(checkpoint = %dir.display(), "checkpoint written"),
            );
            if stop {
                return Err(TrainError::Terminated {
                    step: state.step,
                    checkpoint: dir,
                });
            }
        }
    }
    IN_LOOP.store(false, Ordering::SeqCst);
    if STOP.load(Ordering::SeqCst) {
        std::process::exit(143);
    }
    if let Some(b) = &bar {
        b.finish();
    }

    let adapter_rel = run_rel.join(RunPart::Adapter.folder());
    export::save_peft(
        &args.artifacts.join(&adapter_rel),
        &lora,
        &model_in.peft_name,
        model_in.revision.as_deref(),
    )?;
    let merged = if tr.spec.export.merge {
        let merged_rel = run_rel.join(RunPart::Merged.folder());
        export::save_merged(&args.artifacts.join(&merged_rel), &ck, &lora, template.source())?;
        Some(artifact_ref(&args.artifacts, &merged_rel)?)
    } else {
        None
    };
    let result = TrainResult {
        adapter: artifact_ref(&args.artifacts, &adapter_rel)?,
        merged,
        final_loss: state.losses.last().map(|p| p.loss),
        eval_loss: state.evals.last().map(|e| e.loss),
        steps: state.step as u64,
        tokens: state.tokens,
        chat_format: Some(format),
    };

    let report_dir = run_dir.join(RunPart::Report.folder());
    std::fs::create_dir_all(&report_dir).map_err(artifact::io(&report_dir))?;
    artifact::write_atomic(
        &report_dir.join("loss.svg"),
        report::loss_curve_svg(&state.losses, &state.evals).as_bytes(),
    )?;
    let train_secs = started.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "result": result,
        "device": format!("{device:?}"),
        "dtype": format!("{kind:?}"),
        "baseQuantization": tr.spec.base_quantization,
        "gradientCheckpointing": recompute,
        "dataset": {"dir": dataset.dir, "digest": dataset.digest},
        "trainableParameters": lora.num_parameters(),
        "stepsPerEpoch": per_epoch,
        "trainData": train_stats,
        "evalData": eval_stats,
        "thisProcess": {"steps": state.step - start_step, "seconds": train_secs,
                        "tokensPerSecond": run_tokens as f64 / train_secs.max(1e-9)},
        "losses": state.losses,
        "evals": state.evals,
    });
    artifact::write_atomic(
        &report_dir.join("metrics.json"),
        &serde_json::to_vec_pretty(&report).expect("report serializes"),
    )?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plan_counts_partial_groups() {
        // 9 examples, batch 2 → 5 micro-batches; accum 4 → 2 steps per epoch.
        assert_eq!(super::plan(5, 4, 3, None), (2, 6));
        assert_eq!(super::plan(5, 4, 3, Some(4)), (2, 4));
        assert_eq!(super::plan(1, 4, 1, None), (1, 1));
    }

    #[test]
    fn devices_parse() {
        assert_eq!(super::parse_device("cpu").unwrap(), tch::Device::Cpu);
        assert_eq!(super::parse_device("cuda:1").unwrap(), tch::Device::Cuda(1));
        assert!(super::parse_device("tpu").is_err());
    }
}
