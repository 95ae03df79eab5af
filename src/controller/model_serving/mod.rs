//! ModelServing controller: Deployment + Service (+ NetworkPolicy) on Ollama or the built-in server.

pub mod build;
#[cfg(test)]
mod build_tests;
pub mod modelfile;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
