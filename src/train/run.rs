//! `fireweave-ai train`: the training loop and its edges (inputs, resume, outputs, progress).

use super::checkpoint::{self, EvalPoint, LossPoint, TrainState};
use super::data::{self, Encoder, Example};
use super::export;
use super::lora::LoraStore;
use super::metrics::TrainMetrics;
use super::model::Llama;
use super::optim::{AdamW, learning_rate};
use super::report;
use super::spec::{BaseQuantization, TrainingRunManifest};
use crate::chat::ChatTemplate;
use crate::hf::Checkpoint;
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The TrainingRun (spec.json rendered by the operator, or a manifest in YAML/JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// Artifact root: datasets are read from and runs written to here.
    #[arg(long, default_value = "/artifacts")]
    pub artifacts: PathBuf,
    /// Dataset folder (with train.jsonl, optionally eval.jsonl) instead of the newest artifact of datasetRef.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: String,
    /// Disable the terminal progress bar (log lines remain).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointIoError),
    #[error(transparent)]
    Load(#[from] super::weights::LoadError),
    #[error(transparent)]
    Hf(#[from] crate::hf::CheckpointError),
    #[error(transparent)]
    Template(#[from] crate::chat::TemplateError),
    #[error("{0}")]
    Input(String),
}

/// Resolves a path from the spec: absolute as is, else under the artifact root, else next to the manifest.
fn resolve(p: &Path, artifacts: &Path, spec: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    let under = artifacts.join(p);
    if under.exists() {
        return under;
    }
    spec.parent().unwrap_or(Path::new(".")).join(p)
}

/// The newest dataset artifact of `datasets/<ns>/<name>/<digest>/` holding a train.jsonl.
fn find_dataset(artifacts: &Path, ns: &str, name: &str) -> Result<PathBuf, TrainError> {
    let root = artifacts.join("datasets").join(ns).join(name);
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&root)
        .map_err(|e| TrainError::Input(format!("dataset {ns}/{name}: {}: {e}", root.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("train.jsonl").is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| TrainError::Input(format!("dataset {ns}/{name}: no train.jsonl under {}", root.display())))
}

/// Steps per epoch and in total: an optimizer step consumes `accum` micro-batches; an epoch's last step
/// may take fewer.
pub fn plan(examples: usize, batch: usize, accum: usize, epochs: usize, max_steps: Option<usize>) -> (usize, usize) {
    let per_epoch = examples.div_ceil(batch).div_ceil(accum).max(1);
    let total = per_epoch * epochs;
    (per_epoch, max_steps.map_or(total, |m| m.min(total)))
}

fn tensors(batch: &[&Example], device: Device) -> (Tensor, Tensor) {
    let (ids, targets, b, s) = data::collate(batch);
    (
        Tensor::from_slice(&ids).view([b, s]).to_device(device),
        Tensor::from_slice(&targets).view([b, s]).to_device(device),
    )
}

/// Token-weighted mean loss over a dataset (fixed order, no gradient).
pub fn eval_loss(model: &Llama, lora: &LoraStore, examples: &[Example], batch: usize) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0i64);
    tch::no_grad(|| {
        for chunk in examples.chunks(batch.max(1)) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let (ids, targets) = tensors(&refs, model.device);
            let (loss, count) = model.loss_sum(&ids, &targets, Some(lora), false);
            sum += loss.double_value(&[]);
            n += count;
        }
    });
    (n > 0).then(|| sum / n as f64)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| TrainError::Input(format!("{}: {e}", path.display()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub fn run(args: &TrainArgs) -> Result<serde_json::Value, TrainError> {
    let manifest = TrainingRunManifest::from_file(&args.spec)?;
    let spec = &manifest.spec;
    let hp = &spec.hyperparameters;
    let ns = manifest.namespace().to_owned();
    let name = if manifest.metadata.name.is_empty() { "run".to_owned() } else { manifest.metadata.name.clone() };
    if spec.base_quantization == BaseQuantization::Nf4 {
        return Err(TrainError::Input(
            "baseQuantization nf4 (QLoRA) is not implemented yet in this build; use none".into(),
        ));
    }
    let model_dir = match (&spec.base_model.path, &spec.base_model.hugging_face) {
        (Some(p), _) => resolve(p, &args.artifacts, &args.spec),
        (None, Some(hf)) => {
            return Err(TrainError::Input(format!(
                "baseModel.huggingFace ({}) download is not implemented yet; download it and use baseModel.path",
                hf.repo
            )));
        }
        (None, None) => return Err(TrainError::Input("spec.baseModel needs path or huggingFace".into())),
    };
    let dataset_dir = match &args.dataset {
        Some(d) => d.clone(),
        None => find_dataset(&args.artifacts, &ns, &spec.dataset_ref.name)?,
    };
    let run_dir = args.artifacts.join("runs").join(&ns).join(&name);

    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        "auto" => Device::cuda_if_available(),
        other => return Err(TrainError::Input(format!("--device {other:?}: expected auto, cpu or cuda"))),
    };
    // bf16 halves memory and runs on tensor cores; on CPU f32 is both faster and exact for tests.
    let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    tch::manual_seed(hp.seed as i64);

    let tokenizer_path = model_dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| TrainError::Input(format!("{}: {e}", tokenizer_path.display())))?;
    let template = ChatTemplate::from_model_dir(&model_dir)?;
    let encoder = Encoder {
        template: &template,
        tokenizer: &tokenizer,
        max_len: hp.max_seq_length,
    };
    let (train, train_stats) = encoder.encode_all(&data::read_jsonl(&dataset_dir.join("train.jsonl"))?)?;
    let eval_path = dataset_dir.join("eval.jsonl");
    let (eval, eval_stats) = if eval_path.is_file() {
        encoder.encode_all(&data::read_jsonl(&eval_path)?)?
    } else {
        Default::default()
    };
    if train.is_empty() {
        return Err(TrainError::Input(format!("{}: no trainable examples", dataset_dir.display())));
    }
    tracing::info!(examples = train_stats.examples, truncated = train_stats.truncated_examples,
        dropped_turns = train_stats.dropped_turns, trained_tokens = train_stats.trained_tokens,
        eval_examples = eval_stats.examples, "dataset encoded");

    let ck = Checkpoint::open(&model_dir)?;
    let model = Llama::load(&ck, kind, device)?;
    let mut lora = LoraStore::new(&model, spec.lora.clone());
    let mut opt = AdamW::new(&lora.parameters(), hp.weight_decay);
    let (per_epoch, total) = plan(train.len(), hp.batch_size, hp.gradient_accumulation, hp.epochs, hp.max_steps);
    tracing::info!(model = %model_dir.display(), ?device, trainable = lora.num_parameters(), steps = total, "training");

    let ck_root = run_dir.join("checkpoints");
    let mut state = TrainState {
        rng_seed: hp.seed,
        ..Default::default()
    };
    if let Some((dir, saved)) = checkpoint::latest_valid(&ck_root) {
        checkpoint::restore(&dir, &saved, &mut lora, &mut opt)?;
        tracing::info!(checkpoint = %dir.display(), step = saved.step, "resumed");
        state = saved;
    }

    let metrics = TrainMetrics::new();
    metrics.serve(&args.metrics_addr);
    metrics.total_steps.set(total as i64);
    let bar = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(state.step as u64);
        b
    });

    let lengths: Vec<usize> = train.iter().map(|e| e.ids.len()).collect();
    let mut epoch_cache: Option<(usize, Vec<Vec<usize>>)> = None;
    let started = Instant::now();
    let start_step = state.step;
    let mut run_tokens = 0u64;
    let params = lora.parameters();
    while state.step < total {
        let step = state.step;
        let epoch = step / per_epoch;
        if epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_cache = Some((epoch, data::epoch_batches(&lengths, hp.batch_size, hp.seed, epoch)));
        }
        let batches = &epoch_cache.as_ref().expect("set above").1;
        let first = (step % per_epoch) * hp.gradient_accumulation;
        let group = &batches[first..(first + hp.gradient_accumulation).min(batches.len())];
        // Normalize by the trained tokens of the whole accumulated batch, so the loss is a true token mean.
        let group_tokens: usize = group.iter().flatten().map(|&i| train[i].trained_tokens()).sum();
        tch::manual_seed(hp.seed.wrapping_add(step as u64) as i64);
        let mut loss_sum = 0.0;
        for micro in group {
            let refs: Vec<&Example> = micro.iter().map(|&i| &train[i]).collect();
            let (ids, targets) = tensors(&refs, device);
            let (loss, _) = model.loss_sum(&ids, &targets, Some(&lora), true);
            loss_sum += loss.double_value(&[]);
            (loss / group_tokens.max(1) as f64).backward();
            run_tokens += refs.iter().map(|e| e.ids.len() as u64).sum::<u64>();
        }
        AdamW::clip_grad_norm(&params, hp.max_grad_norm);
        let lr = learning_rate(hp.learning_rate, step, hp.warmup_steps, total, hp.lr_scheduler);
        opt.step(&params, lr);
        AdamW::zero_grad(&params);
        let loss = loss_sum / group_tokens.max(1) as f64;
        state.step += 1;
        state.epoch = state.step / per_epoch;
        state.micro_batch = (state.step % per_epoch) * hp.gradient_accumulation;
        state.tokens += group.iter().flatten().map(|&i| train[i].ids.len() as u64).sum::<u64>();
        state.losses.push(LossPoint { step: state.step, loss, lr });

        let elapsed = started.elapsed().as_secs_f64();
        let tps = run_tokens as f64 / elapsed.max(1e-9);
        let eta = elapsed / (state.step - start_step) as f64 * (total - state.step) as f64;
        metrics.step.set(state.step as i64);
        metrics.epoch.set(epoch as i64);
        metrics.loss.set(loss);
        metrics.learning_rate.set(lr);
        metrics.tokens_per_second.set(tps);
        metrics.eta_seconds.set(eta);
        tracing::info!(step = state.step, total, epoch, loss, lr, tokens_per_second = tps.round(), eta_s = eta.round(), "step");
        if let Some(b) = &bar {
            b.set_position(state.step as u64);
            b.set_message(format!("loss {loss:.4}"));
        }

        if state.step % per_epoch == 0 || state.step == total {
            if let Some(l) = eval_loss(&model, &lora, &eval, hp.batch_size) {
                metrics.eval_loss.set(l);
                tracing::info!(epoch, step = state.step, eval_loss = l, "evaluated");
                state.evals.push(EvalPoint { epoch, step: state.step, loss: l });
            }
        }
        if state.step % spec.checkpoint_every_steps == 0 || state.step == total {
            let dir = checkpoint::save(&ck_root, &lora, &opt, state.clone(), 2)?;
            tracing::info!(checkpoint = %dir.display(), "checkpoint written");
        }
    }
    if let Some(b) = &bar {
        b.finish();
    }

    let base_name = model_dir.display().to_string();
    let adapter_dir = run_dir.join("adapter");
    export::save_peft(&adapter_dir, &lora, &base_name)?;
    let mut result = json!({
        "adapter": {"uri": adapter_dir.display().to_string(), "digest": export::dir_digest(&adapter_dir)?},
    });
    if spec.export.merge {
        let merged_dir = run_dir.join("merged");
        export::save_merged(&merged_dir, &ck, &lora)?;
        result["merged"] = json!({"uri": merged_dir.display().to_string(), "digest": export::dir_digest(&merged_dir)?});
    }
    let final_loss = state.losses.last().map(|p| p.loss);
    let eval_final = state.evals.last().map(|e| e.loss);
    result["finalLoss"] = json!(final_loss);
    result["evalLoss"] = json!(eval_final);
    result["steps"] = json!(state.step);
    result["tokens"] = json!(state.tokens);

    let report_dir = run_dir.join("report");
    std::fs::create_dir_all(&report_dir).map_err(|e| TrainError::Input(format!("{}: {e}", report_dir.display())))?;
    write_atomic(&report_dir.join("loss.svg"), report::loss_curve_svg(&state.losses, &state.evals).as_bytes())?;
    let report = json!({
        "result": result,
        "device": format!("{device:?}"),
        "dtype": format!("{kind:?}"),
        "trainableParameters": lora.num_parameters(),
        "stepsPerEpoch": per_epoch,
        "trainData": train_stats,
        "evalData": eval_stats,
        "tokensPerSecondThisProcess": run_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        "losses": state.losses,
        "evals": state.evals,
    });
    write_atomic(&report_dir.join("metrics.json"), &serde_json::to_vec_pretty(&report).expect("serializes"))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plan_counts_partial_groups() {
        // 9 examples, batch 2 → 5 micro-batches; accum 4 → 2 steps per epoch.
        assert_eq!(super::plan(9, 2, 4, 3, None), (2, 6));
        assert_eq!(super::plan(9, 2, 4, 3, Some(4)), (2, 4));
        assert_eq!(super::plan(1, 2, 4, 1, None), (1, 1));
    }
}
