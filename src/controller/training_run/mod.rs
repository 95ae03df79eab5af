//! TrainingRun controller: one GPU Job per attempt, train then quantize.

pub mod build;
pub mod progress;
#[cfg(test)]
mod build_tests;
