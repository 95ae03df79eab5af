//! What every reconcile shares, and the error type whose fixed `category()` labels metrics and Events.

use crate::api::conditions::Phase;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::config::Settings;
use super::workload::{FIELD_MANAGER, WORKER_METRICS_PORT};

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Fetches a trainer's metrics text; a plain HTTP client in the operator, a stub-free real one in tests.
    pub http: reqwest::Client,
    /// Writes Kubernetes Events (phase changes and failures) on our resources.
    pub recorder: Recorder,
    /// Port of the trainer's /metrics on its Pod IP (the Job's `metrics` port; tests point it elsewhere).
    pub trainer_metrics_port: u16,
}

impl Context {
    pub fn new(client: Client, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            http: reqwest::Client::new(),
            trainer_metrics_port: WORKER_METRICS_PORT as u16,
        }
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
        let event = Event {
            type_: if new == Phase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: new.to_string(),
            note: Some(message.chars().take(1000).collect()),
            action: "Reconcile".to_string(),
            secondary: None,
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
