//! TrainingRun reconcile: wait for the Dataset, run one Job per attempt (train, then quantize), keep
//! `status.progress` current from the trainer's metrics, and copy the artifacts into status when it ends.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{build, progress};
use crate::api::conditions::{EVALUATED, Health, Phase, is_true, now, reason, set_condition, set_health};
use crate::api::training_run::{PassedArtifacts, TrainingArtifacts};
use crate::api::{ArtifactRef, ArtifactRetention, Dataset, TrainingRun, TrainingRunStatus};
use crate::contract::{Digest, EvaluateResult, QuantizeResult, TrainResult};
use crate::controller::apply::{ensure, ensure_read, update_status};
use crate::controller::context::{Context, Error, kube_err};
use crate::controller::finalizer;
use crate::controller::job_status::{JobOutcome, container_result, disrupted_pods, outcome, running_pod_ip};

/// How often a running attempt is looked at again (progress scraping); Job changes also wake it.
const POLL: Duration = Duration::from_secs(15);
/// How often a run waiting on its Dataset checks again; a Dataset turning Ready also wakes it.
const WAIT: Duration = Duration::from_secs(60);

/// Entry point for the controller runtime.
pub async fn reconcile(tr: Arc<TrainingRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = tr.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "TrainingRun",
        name: tr.name_any(),
    })?;
    let api: Api<TrainingRun> = Api::namespaced(ctx.client.clone(), &ns);
    let delete_artifacts = tr.spec.artifact_retention == ArtifactRetention::Delete;
    match finalizer::step(&api, tr.as_ref(), delete_artifacts).await? {
        finalizer::Step::Proceed => apply_run(&tr, &ctx, &ns, &api).await,
        finalizer::Step::Done => Ok(Action::await_change()),
        finalizer::Step::CleanUp => {
            let folder = crate::contract::layout::run_dir(&ns, &tr.name_any());
            finalizer::remove_artifacts(&ctx.settings.artifact_mount, &folder, delete_artifacts)?;
            finalizer::release(&api, tr.as_ref()).await?;
            Ok(Action::await_change())
        }
    }
}

/// The dataset build to train on: the Dataset's artifact once it is Ready. While it rebuilds, an attempt
/// already under way keeps the build it started with rather than being restarted on a moving target.
pub fn dataset_to_use(tr: &TrainingRun, dataset: Option<&Dataset>) -> Option<ArtifactRef> {
    let ready = dataset
        .and_then(|d| d.status.as_ref())
        .filter(|s| is_true(&s.conditions, crate::api::conditions::READY))
        .and_then(|s| s.artifact.clone());
    ready.or_else(|| tr.status.as_ref().and_then(|s| s.dataset.clone()))
}

/// The attempt the spec asks for: the current one while its inputs are unchanged, the next one otherwise.
pub fn attempt_for(tr: &TrainingRun, inputs_digest: &Digest) -> u32 {
    match tr.status.as_ref() {
        Some(s) if s.attempt > 0 && s.inputs_digest.as_ref() == Some(inputs_digest) => s.attempt,
        Some(s) => s.attempt + 1,
        None => 1,
    }
}

async fn apply_run(tr: &TrainingRun, ctx: &Context, ns: &str, api: &Api<TrainingRun>) -> Result<Action, Error> {
    let ds_name = &tr.spec.dataset_ref.name;
    let dataset = ctx.dataset(ns, ds_name).await?;
    let Some(artifact) = dataset_to_use(tr, dataset.as_ref()) else {
        let message = match &dataset {
            None => format!("Dataset {ds_name} does not exist yet"),
            Some(_) => format!("Dataset {ds_name} is not Ready yet"),
        };
        let status = waiting_status(tr, &message, &now());
        update_status(ctx, api, tr, &status).await?;
        return Ok(Action::requeue(WAIT));
    };

    let digest = build::inputs_digest(&tr.spec, &artifact);
    let attempt = attempt_for(tr, &digest);
    let name = build::job_name(tr, attempt);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);

    // A new attempt never reuses the old Job: stop the previous one so it frees its GPU, keep its files.
    let previous = tr
        .status
        .as_ref()
        .map(|s| s.attempt)
        .filter(|a| *a > 0 && *a != attempt);
    if let Some(previous) = previous {
        let old = build::job_name(tr, previous);
        match jobs.delete(&old, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(kube_err(format!("delete Job {ns}/{old}"))(e)),
        }
    }

    ensure(ctx, &config_maps, &build::config_map(tr, attempt, &artifact)).await?;
    let job = ensure_read(ctx, &jobs, &build::job(tr, attempt, &artifact, &ctx.settings)).await?;
    let pods = ctx.job_pods(ns, &name, &job).await?;

    // Progress comes from the trainer's own metrics while it trains; a failed scrape keeps the last figures
    // (a preempted Pod's replacement reports again once it has resumed from its checkpoint).
    let metrics = match (training_now(&pods), running_pod_ip(&pods)) {
        (true, Some(ip)) => scrape(ctx, &ip).await,
        _ => None,
    };
    let observed = Observed {
        attempt,
        inputs_digest: &digest,
        job_name: &name,
        dataset: &artifact,
        job: &job,
        pods: &pods,
    };
    let status = next_status(tr, &observed, metrics.as_deref(), &now());
    let finished = status.phase.is_some_and(Phase::is_final);
    update_status(ctx, api, tr, &status).await?;
    Ok(if finished {
        Action::await_change()
    } else {
        Action::requeue(POLL)
    })
}

async fn scrape(ctx: &Context, ip: &str) -> Option<String> {
    let url = format!("http://{ip}:{}/metrics", ctx.trainer_metrics_port);
    let response = ctx.http.get(&url).timeout(Duration::from_secs(3)).send().await.ok()?;
    response.error_for_status().ok()?.text().await.ok()
}

/// The step the running Pod is in: its first container (init containers first, in order) that has not
/// finished successfully — `train`, `quantize` or `evaluate`.
fn current_step(pods: &[Pod]) -> Option<String> {
    // Not `phase == Running`: a kubelet reports the Pod Pending while `train` (an init container) runs.
    let pod = pods.iter().find(|p| crate::controller::job_status::is_running(p))?;
    let finished = |c: &&k8s_openapi::api::core::v1::ContainerStatus| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    };
    let spec = pod.spec.as_ref();
    let order = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
        .map(|c| c.name.as_str());
    let status = pod.status.as_ref();
    let statuses: Vec<&k8s_openapi::api::core::v1::ContainerStatus> = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten())
        .collect();
    let done = |name: &str| statuses.iter().filter(|c| c.name == name).any(&finished);
    let mut names: Vec<&str> = order.collect();
    if names.is_empty() {
        // A Pod read without its spec: the statuses' own order is the containers' order.
        names = statuses.iter().map(|c| c.name.as_str()).collect();
    }
    names.into_iter().find(|n| !done(n)).map(String::from)
}

fn training_now(pods: &[Pod]) -> bool {
    current_step(pods).is_none_or(|s| s == "train")
}

fn waiting_status(tr: &TrainingRun, message: &str, now: &Time) -> TrainingRunStatus {
    let mut status = tr.status.clone().unwrap_or_default();
    status.observed_generation = tr.metadata.generation;
    // A run that already trained keeps its phase and artifacts while its Dataset rebuilds.
    if status.attempt == 0 {
        status.phase = Some(Phase::Pending);
    }
    set_health(
        &mut status.conditions,
        Health::Reconciling,
        reason::WAITING_FOR_DATASET,
        message,
        tr.metadata.generation,
        now,
    );
    status
}

/// What one reconcile saw of the current attempt.
pub struct Observed<'a> {
    pub attempt: u32,
    pub inputs_digest: &'a Digest,
    pub job_name: &'a str,
    pub dataset: &'a ArtifactRef,
    pub job: &'a Job,
    pub pods: &'a [Pod],
}

/// The status after observing the current attempt's Job and Pods (and, while training, its metrics text).
/// The artifacts of an earlier attempt stay until this one replaces them, so servings keep their model.
pub fn next_status(tr: &TrainingRun, seen: &Observed<'_>, metrics: Option<&str>, now: &Time) -> TrainingRunStatus {
    let mut status = tr.status.clone().unwrap_or_default();
    let generation = tr.metadata.generation;
    if status.attempt != seen.attempt {
        status.progress = None;
        status.final_loss = None;
        status.eval_loss = None;
        status.evaluation = None;
        status.restarts = 0;
    }
    status.observed_generation = generation;
    status.attempt = seen.attempt;
    status.inputs_digest = Some(*seen.inputs_digest);
    status.job_name = Some(seen.job_name.to_string());
    status.dataset = Some(seen.dataset.clone());
    // An evicted Pod is deleted once the Job controller has accounted for it, so a later reconcile no longer
    // lists it: the count of this attempt's replaced Pods only grows.
    status.restarts = status.restarts.max(disrupted_pods(seen.pods));
    if let Some(p) = metrics.and_then(progress::from_metrics) {
        status.progress = Some(p);
    }
    let job = seen.job_name;
    let (phase, health, why, message) = match outcome(seen.job, seen.pods) {
        JobOutcome::Pending => (
            Phase::Pending,
            Health::Reconciling,
            reason::JOB_PENDING,
            format!("Job {job} is waiting for a GPU node"),
        ),
        JobOutcome::Running if training_now(seen.pods) => {
            let at = status
                .progress
                .as_ref()
                .map(|p| format!(" (step {})", p.display))
                .unwrap_or_default();
            (
                Phase::Training,
                Health::Reconciling,
                reason::TRAINING,
                format!("attempt {} is training{at}", seen.attempt),
            )
        }
        JobOutcome::Running if current_step(seen.pods).as_deref() == Some("evaluate") => (
            Phase::Evaluating,
            Health::Reconciling,
            reason::EVALUATING,
            format!(
                "attempt {} is evaluating its GGUF files on the eval split",
                seen.attempt
            ),
        ),
        JobOutcome::Running => (
            Phase::Quantizing,
            Health::Reconciling,
            reason::QUANTIZING,
            format!("attempt {} is writing GGUF files", seen.attempt),
        ),
        JobOutcome::Failed(why) => (Phase::Failed, Health::Stalled, reason::JOB_FAILED, why),
        JobOutcome::Succeeded => match results(seen.pods, tr.spec.evaluation.enabled) {
            Ok((train, quantize, evaluation)) => {
                let files: Vec<&str> = quantize.gguf.iter().map(|g| g.quantization.as_str()).collect();
                let mut message = format!(
                    "trained {} steps, final loss {}; GGUF: {}",
                    train.steps,
                    fmt_loss(train.final_loss),
                    files.join(", ")
                );
                status.final_loss = train.final_loss;
                status.eval_loss = train.eval_loss;
                if let Some(p) = status.progress.as_mut() {
                    p.step = train.steps.max(p.step);
                    p.total_steps = p.total_steps.max(p.step);
                    p.display = format!("{}/{} (100%)", p.step, p.total_steps);
                }
                let artifacts = TrainingArtifacts {
                    adapter: Some(train.adapter),
                    merged: train.merged,
                    gguf: quantize.gguf,
                    chat_format: train.chat_format,
                };
                let outcome = match evaluation {
                    None => (Phase::Succeeded, Health::Ready, reason::SUCCEEDED),
                    Some(e) if e.passed => {
                        status.passed = Some(PassedArtifacts {
                            attempt: seen.attempt,
                            gguf: artifacts.gguf.clone(),
                            chat_format: artifacts.chat_format,
                        });
                        set_condition(
                            &mut status.conditions,
                            EVALUATED,
                            true,
                            reason::GATE_PASSED,
                            evaluation_summary(&e),
                            generation,
                            now,
                        );
                        message.push_str(&format!("; evaluation passed ({})", evaluation_summary(&e)));
                        status.evaluation = Some(e);
                        (Phase::Succeeded, Health::Ready, reason::SUCCEEDED)
                    }
                    Some(e) => {
                        let why = format!("evaluation gate failed: {}", e.failures.join("; "));
                        set_condition(
                            &mut status.conditions,
                            EVALUATED,
                            false,
                            reason::GATE_FAILED,
                            &why,
                            generation,
                            now,
                        );
                        message = why;
                        status.evaluation = Some(e);
                        (Phase::Failed, Health::Stalled, reason::GATE_FAILED)
                    }
                };
                status.artifacts = Some(artifacts);
                (outcome.0, outcome.1, outcome.2, message)
            }
            Err(e) => (Phase::Failed, Health::Stalled, reason::RESULT_UNREADABLE, e.to_string()),
        },
    };
    status.phase = Some(phase);
    set_health(&mut status.conditions, health, why, &message, generation, now);
    status
}

fn fmt_loss(loss: Option<f64>) -> String {
    loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "n/a".into())
}

type Results = (TrainResult, QuantizeResult, Option<EvaluateResult>);

fn results(pods: &[Pod], evaluated: bool) -> Result<Results, crate::controller::job_status::ResultError> {
    let evaluation = if evaluated {
        Some(container_result(pods, "evaluate")?)
    } else {
        None
    };
    Ok((
        container_result(pods, "train")?,
        container_result(pods, "quantize")?,
        evaluation,
    ))
}

/// The headline figures of an evaluation, for messages: the adapter's eval loss against the base model's
/// and each GGUF's increase.
fn evaluation_summary(e: &EvaluateResult) -> String {
    let mut parts = vec![format!(
        "eval loss {} (base {})",
        fmt_loss(e.adapter.loss),
        fmt_loss(e.base.loss)
    )];
    for g in &e.gguf {
        parts.push(format!(
            "{} {}",
            g.quantization,
            g.loss_increase.map_or_else(|| "n/a".into(), |i| format!("{i:+.4}"))
        ));
    }
    parts.join(", ")
}
