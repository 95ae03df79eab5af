//! The operator on a real Kubernetes control plane (issue 21): kube-apiserver, etcd, kube-controller-manager,
//! kube-scheduler and KWOK's simulated nodes, built by scripts/cluster.sh. The chart is rendered by Helm's
//! engine and applied; the operator runs as the chart's Deployment Pod would, with its ServiceAccount's token;
//! every Job Pod it creates is run by the harness's kubelet (tests/support/cluster/kubelet.rs), which starts
//! the Pod's containers — the real `fireweave-ai dataset|train|quantize` — and reports their exit codes and
//! termination messages through KWOK. Nothing of a Pod spec is re-typed here: a wrong argument, mount or
//! environment variable in what the operator builds fails these tests.
//!
//! Every test installs the chart into a namespace of its own on one shared control plane and ends by reading
//! the API server's audit log: a request the chart's Role does not allow fails the test.
//!
//!   export FIREWEAVE_CLUSTER_BIN="$(bash scripts/cluster.sh)"; cargo test --test operator_cluster
#![cfg(feature = "train")]

#[path = "support/cluster/mod.rs"]
mod cluster;

#[path = "operator_cluster/crds.rs"]
mod crds;
#[path = "operator_cluster/failures.rs"]
mod failures;
#[path = "operator_cluster/harness.rs"]
mod harness;
#[path = "operator_cluster/health.rs"]
mod health;
#[path = "operator_cluster/leader.rs"]
mod leader;
#[path = "operator_cluster/pipeline.rs"]
mod pipeline;
