//! What every reconcile shares, and the error type whose fixed `category()` labels metrics and Events.

use kube::Client;

use super::config::Settings;

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Fetches a trainer's metrics text; a plain HTTP client in the operator, a stub-free real one in tests.
    pub http: reqwest::Client,
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
