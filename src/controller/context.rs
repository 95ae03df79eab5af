//! What every reconcile shares, and the error type whose fixed `category()` labels metrics and Events.

use crate::api::conditions::Phase;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, Resource};

use super::job_status::{JobOutcome, outcome};
use crate::api::{Dataset, TrainingRun};

use super::cache::{AppliedMemo, Cache, WrittenStatus};
use super::config::Settings;
use super::events::{EventWriter, Note};
use super::workload::{FIELD_MANAGER, WORKER_METRICS_PORT};

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Fetches a trainer's metrics text; a plain HTTP client in the operator, a stub-free real one in tests.
    pub http: reqwest::Client,
    /// Writes Kubernetes Events (phase changes and failures) on our resources.
    pub recorder: Arc<EventWriter>,
    /// Port of the trainer's /metrics on its Pod IP (the Job's `metrics` port; tests point it elsewhere).
    pub trainer_metrics_port: u16,
    /// The watches' stores, read instead of the API. `None` where nothing watches — the reconcile unit tests,
    /// whose in-memory API server answers requests but serves no watch streams: every read is a request.
    pub cache: Option<Cache>,
    /// What was applied to each child last (see [`AppliedMemo`]).
    pub applied: Arc<AppliedMemo>,
    /// What status was written last for each custom resource (see [`WrittenStatus`]).
    pub written: Arc<WrittenStatus>,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        Self {
            recorder: Arc::new(EventWriter::new(
                client.clone(),
                FIELD_MANAGER,
                std::env::var("POD_NAME").ok(),
            )),
            client,
            settings,
            http: reqwest::Client::new(),
            trainer_metrics_port: WORKER_METRICS_PORT as u16,
            cache: None,
            applied: Default::default(),
            written: Default::default(),
        }
    }

    /// Dataset `name` in `ns`: from the cache, or read.
    pub async fn dataset(&self, ns: &str, name: &str) -> Result<Option<Dataset>, Error> {
        self.cached_or_read(ns, name, |c| c.dataset(ns, name)).await
    }

    /// TrainingRun `name` in `ns`: from the cache, or read.
    pub async fn training_run(&self, ns: &str, name: &str) -> Result<Option<TrainingRun>, Error> {
        self.cached_or_read(ns, name, |c| c.run(ns, name)).await
    }

    /// An object from the synced cache when there is one (the operator), else a GET (unit tests).
    async fn cached_or_read<K>(
        &self,
        ns: &str,
        name: &str,
        cached: impl FnOnce(&Cache) -> Option<Arc<K>>,
    ) -> Result<Option<K>, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if let Some(cache) = &self.cache {
            return Ok(cached(cache).map(|o| (*o).clone()));
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(kube_err(format!("get {} {ns}/{name}", K::kind(&()))))
    }

    /// The Pods of Job `job_name`, from the cache. Once the Job has ended, its result is read from their
    /// termination messages, and the Pod watch may not have delivered the final Pod status yet when the
    /// Job's own update arrives: unless every cached Pod has finished, they are listed from the API then.
    pub async fn job_pods(&self, ns: &str, job_name: &str, job: &Job) -> Result<Vec<Pod>, Error> {
        let ended = !matches!(outcome(job, &[]), JobOutcome::Pending | JobOutcome::Running);
        if let Some(cache) = &self.cache {
            let pods = cache.job_pods(ns, job_name);
            let finished = |p: &Pod| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            };
            if !ended || (!pods.is_empty() && pods.iter().all(finished)) {
                return Ok(pods);
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await
            .map_err(kube_err(format!("list Pods of Job {ns}/{job_name}")))?;
        Ok(list.items)
    }

    /// Records a phase change as an Event (`Warning` when it is a failure) so `kubectl describe` tells the
    /// story. Losing an Event must not fail the reconcile, so a write error is only logged.
    pub async fn phase_event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        old: Option<Phase>,
        new: Phase,
        message: &str,
    ) {
        if old == Some(new) {
            return;
        }
        let event = Note {
            warning: new == Phase::Failed,
            reason: new.to_string(),
            note: message.chars().take(1000).collect(),
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason = %new, "could not record an Event");
        }
    }
}

/// A reconcile failure. Waiting on a dependency is not one: that is a status condition and a requeue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {name} has no namespace")]
    MissingNamespace { kind: &'static str, name: String },
    #[error("Kubernetes API call for {what} failed: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("removing artifacts at {path}: {source}")]
    Cleanup { path: String, source: std::io::Error },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Whether the API server refused the request to shed load (429 Too Many Requests).
    pub fn is_throttled(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 429)
    }

    /// Short fixed label for metrics and Event reasons; never the error text.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingNamespace { .. } => "invalid_object",
            Error::Kube { .. } => "kube_api",
            Error::Cleanup { .. } => "artifact_cleanup",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Attaches what was being done to a kube error.
pub(crate) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}
