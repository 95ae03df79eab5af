//! The operator's controllers: one folder per custom resource, each with pure builders (`build.rs`) for the
//! objects it owns. Shared pieces: installation settings, hardened security contexts, labels and volumes.

pub mod apply;
pub mod cache;
pub mod config;
pub mod context;
pub mod dataset;
pub mod events;
// An in-memory API server for unit tests that assert requests, and for the in-memory convergence benchmark;
// never part of the shipped operator.
#[cfg(any(test, feature = "fake-api"))]
pub mod fake_api;
pub mod finalizer;
pub mod job_status;
pub mod leader;
pub mod model_serving;
pub mod operator;
#[cfg(test)]
mod rbac;
pub mod security;
pub mod slim;
#[cfg(test)]
mod test_support;
pub mod training_run;
pub mod workload;
