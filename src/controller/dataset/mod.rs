//! Dataset controller: a Job running `fireweave-ai dataset` with the spec in a ConfigMap.

pub mod build;
#[cfg(test)]
mod build_tests;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
