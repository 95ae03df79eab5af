//! TrainingRun controller: one GPU Job per attempt, train then quantize.

pub mod build;
#[cfg(test)]
mod build_tests;
pub mod progress;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
