//! ModelServing reconcile: resolve the GGUF (a TrainingRun's output or a file on the volume), apply the
//! ConfigMap, Deployment, Service and NetworkPolicy, and report the digest that every Ready replica serves.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::build;
use crate::api::conditions::{Health, Phase, now, reason, set_health};
use crate::api::{ModelServing, ModelServingStatus, ServedModel, TrainingRun};
use crate::controller::apply::{ensure, ensure_read, update_status};
use crate::controller::context::{Context, Error, kube_err};

/// How often a rollout in progress is looked at again; Deployment changes also wake it.
const POLL: Duration = Duration::from_secs(15);
/// How often a serving waiting for its TrainingRun checks again; the run producing GGUF also wakes it.
const WAIT: Duration = Duration::from_secs(60);

/// The GGUF the spec asks for, or why there is none yet (the decision `fireweave-ai run` makes too).
pub fn wanted_model(ms: &ModelServing, run: Option<&TrainingRun>) -> Result<ServedModel, String> {
    ms.spec.model.resolve(run)
}

/// Entry point for the controller runtime.
pub async fn reconcile(ms: Arc<ModelServing>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ms.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "ModelServing",
        name: ms.name_any(),
    })?;
    let api: Api<ModelServing> = Api::namespaced(ctx.client.clone(), &ns);
    // The Service and the NetworkPolicy depend on the ModelServing's spec alone, so they exist from the start
    // (clients can resolve the name while the model trains). Creating them early also matters on the API
    // server's side: it hands out ClusterIPs one at a time under one lock, so Services applied only once their
    // models were ready queued behind each other, and so did those ModelServings' rollouts.
    let name = build::child_name(&ms);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    ensure(&ctx, &services, &build::service(&ms)).await?;
    match build::network_policy(&ms) {
        Some(policy) => {
            ensure(&ctx, &policies, &policy).await?;
        }
        // allowedClients was emptied: the API is open again, so our old policy must go.
        None => {
            let exists = match &ctx.cache {
                Some(cache) => cache.child_meta::<NetworkPolicy>(&ns, &name).is_some(),
                None => policies
                    .get_opt(&name)
                    .await
                    .map_err(kube_err(format!("get NetworkPolicy {ns}/{name}")))?
                    .is_some(),
            };
            if exists {
                match policies.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    // Already gone: the cache had not seen the deletion yet.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(kube_err(format!("delete NetworkPolicy {ns}/{name}"))(e)),
                }
            }
        }
    }

    let run = match &ms.spec.model.training_run_ref {
        Some(r) => ctx.training_run(&ns, &r.name).await?,
        None => None,
    };
    let model = match wanted_model(&ms, run.as_ref()) {
        Ok(model) => model,
        Err(why) => {
            let status = waiting_status(&ms, &why, &now());
            update_status(&ctx, &api, ms.as_ref(), &status).await?;
            return Ok(Action::requeue(WAIT));
        }
    };

    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);

    let config = match build::config_map(&ms, &model) {
        Ok(config) => config,
        Err(why) => {
            let status = stalled_status(&ms, &why, &now());
            update_status(&ctx, &api, ms.as_ref(), &status).await?;
            return Ok(Action::await_change());
        }
    };
    ensure(&ctx, &config_maps, &config).await?;
    let deployment = ensure_read(
        &ctx,
        &deployments,
        &build::deployment(&ms, &model, &config, &ctx.settings),
    )
    .await?;
    let mut status = next_status(&ms, &model, &deployment, &now());
    // A newer model held back by its evaluation: the one serving stays, and the status says why.
    if let Some(note) = crate::api::model_serving::held_back(&ms.spec.model, run.as_ref()) {
        for c in status.conditions.iter_mut().filter(|c| c.status == "True") {
            if !c.message.contains(&note) {
                c.message = format!("{}; {note}", c.message);
            }
        }
    }
    let serving = status.phase == Some(Phase::Serving);
    update_status(&ctx, &api, ms.as_ref(), &status).await?;
    Ok(if serving {
        Action::await_change()
    } else {
        Action::requeue(POLL)
    })
}

fn waiting_status(ms: &ModelServing, why: &str, now: &Time) -> ModelServingStatus {
    let mut status = ms.status.clone().unwrap_or_default();
    status.observed_generation = ms.metadata.generation;
    if status.served_model.is_none() {
        status.phase = Some(Phase::Pending);
    }
    set_health(
        &mut status.conditions,
        Health::Reconciling,
        reason::WAITING_FOR_TRAINING_RUN,
        why,
        ms.metadata.generation,
        now,
    );
    status
}

/// A spec that cannot be served as it is: Stalled until it changes; the model already serving stays.
fn stalled_status(ms: &ModelServing, why: &str, now: &Time) -> ModelServingStatus {
    let mut status = ms.status.clone().unwrap_or_default();
    status.observed_generation = ms.metadata.generation;
    if status.served_model.is_none() {
        status.phase = Some(Phase::Failed);
    }
    set_health(
        &mut status.conditions,
        Health::Stalled,
        reason::INVALID_SPEC,
        why,
        ms.metadata.generation,
        now,
    );
    status
}

/// Whether the Deployment runs the current template on every replica, all of them Ready, none left over.
pub fn rolled_out(d: &Deployment, replicas: i32) -> bool {
    let Some(s) = d.status.as_ref() else {
        return replicas == 0;
    };
    let generation_seen = match (d.metadata.generation, s.observed_generation) {
        (Some(want), Some(seen)) => seen >= want,
        (None, _) => true,
        (Some(_), None) => false,
    };
    generation_seen
        && s.updated_replicas.unwrap_or(0) >= replicas
        && s.ready_replicas.unwrap_or(0) >= replicas
        && s.replicas.unwrap_or(0) <= replicas
}

/// The status after observing the Deployment. `servedModel` changes only once every replica runs the new
/// model and is Ready: until then the previous digest is what clients get.
pub fn next_status(ms: &ModelServing, model: &ServedModel, deployment: &Deployment, now: &Time) -> ModelServingStatus {
    let mut status = ms.status.clone().unwrap_or_default();
    let generation = ms.metadata.generation;
    status.observed_generation = generation;
    status.endpoint = Some(build::endpoint(ms));
    status.ready_replicas = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let replicas = ms.spec.replicas;
    let (phase, health, why, message) = if rolled_out(deployment, replicas) {
        status.served_model = Some(model.clone());
        let message = format!(
            "{} replica(s) serve {} ({})",
            status.ready_replicas,
            ms.spec.model_name,
            model.digest.short()
        );
        (Phase::Serving, Health::Ready, reason::MODEL_SERVED, message)
    } else {
        let updated = deployment.status.as_ref().and_then(|s| s.updated_replicas).unwrap_or(0);
        let message = format!(
            "rolling out {}: {updated}/{replicas} replicas updated, {} ready",
            model.digest.short(),
            status.ready_replicas
        );
        (Phase::RollingOut, Health::Reconciling, reason::ROLLING_OUT, message)
    };
    status.phase = Some(phase);
    set_health(&mut status.conditions, health, why, &message, generation, now);
    status
}
