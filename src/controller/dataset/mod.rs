//! Dataset controller: a Job running `fireweave-ai dataset` with the spec in a ConfigMap.

pub mod build;
pub mod reconcile;
#[cfg(test)]
mod build_tests;
#[cfg(test)]
mod reconcile_tests;
