//! Dataset reconcile: build the desired ConfigMap and Job, apply them, read the Job back into status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::build;
use crate::api::conditions::{Health, Phase, now, reason, set_health};
use crate::api::{ArtifactRetention, Dataset, DatasetStatus};
use crate::contract::DatasetResult;
use crate::controller::apply::{ensure, ensure_read, update_status};
use crate::controller::context::{Context, Error};
use crate::controller::finalizer;
use crate::controller::job_status::{JobOutcome, container_result, outcome};

/// Entry point for the controller runtime.
pub async fn reconcile(ds: Arc<Dataset>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ds.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "Dataset",
        name: ds.name_any(),
    })?;
    let api: Api<Dataset> = Api::namespaced(ctx.client.clone(), &ns);
    let folder = crate::contract::layout::dataset_builds(&ns, &ds.name_any());
    let delete_artifacts = ds.spec.artifact_retention == ArtifactRetention::Delete;
    match finalizer::step(&api, ds.as_ref(), delete_artifacts).await? {
        finalizer::Step::Proceed => apply_dataset(&ds, &ctx, &ns, &api).await,
        finalizer::Step::Done => Ok(Action::await_change()),
        finalizer::Step::CleanUp => {
            finalizer::remove_artifacts(&ctx.settings.artifact_mount, &folder, delete_artifacts)?;
            finalizer::release(&api, ds.as_ref()).await?;
            Ok(Action::await_change())
        }
    }
}

async fn apply_dataset(ds: &Dataset, ctx: &Context, ns: &str, api: &Api<Dataset>) -> Result<Action, Error> {
    let name = build::job_name(ds);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);

    ensure(ctx, &config_maps, &build::config_map(ds)).await?;
    let job = ensure_read(ctx, &jobs, &build::job(ds, &ctx.settings)).await?;
    let pods = ctx.job_pods(ns, &name, &job).await?;

    let status = next_status(ds, &name, &job, &pods, &now());
    update_status(ctx, api, ds, &status).await?;
    Ok(if status.phase.is_some_and(Phase::is_final) {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(30))
    })
}

/// The status after observing the Job of the current spec. The previous artifact and stats stay until a new
/// build replaces them, so TrainingRuns keep a dataset to point at while it rebuilds.
pub fn next_status(ds: &Dataset, job_name: &str, job: &Job, pods: &[Pod], now: &Time) -> DatasetStatus {
    let mut status = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation;
    status.observed_generation = generation;
    status.job_name = Some(job_name.to_string());
    let (phase, health, why, message) = match outcome(job, pods) {
        JobOutcome::Pending => (
            Phase::Pending,
            Health::Reconciling,
            reason::JOB_PENDING,
            format!("Job {job_name} is starting"),
        ),
        JobOutcome::Running => (
            Phase::Running,
            Health::Reconciling,
            reason::JOB_RUNNING,
            format!("Job {job_name} is building the dataset"),
        ),
        JobOutcome::Failed(why) => (Phase::Failed, Health::Stalled, reason::JOB_FAILED, why),
        JobOutcome::Succeeded => match container_result::<DatasetResult>(pods, "dataset") {
            Ok(result) => {
                let message = format!(
                    "kept {} of {} examples ({} train, {} eval)",
                    result.stats.kept, result.stats.input, result.stats.train, result.stats.eval
                );
                status.artifact = Some(result.artifact);
                status.stats = Some(result.stats);
                (Phase::Succeeded, Health::Ready, reason::SUCCEEDED, message)
            }
            Err(e) => (Phase::Failed, Health::Stalled, reason::RESULT_UNREADABLE, e.to_string()),
        },
    };
    status.phase = Some(phase);
    set_health(&mut status.conditions, health, why, &message, generation, now);
    status
}
