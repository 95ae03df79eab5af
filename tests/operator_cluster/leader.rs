//! Must-show 4: two operator replicas elect a leader through the Lease; `kill -9` of the leader in the middle of
//! convergence hands the work to the other, and a single operator restarted in the middle converges the same
//! way. The audit log shows every Job and Deployment created exactly once.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cluster;
use crate::cluster::release::Release;
use crate::cluster::release::eventually;
use crate::failures::{converge, cpu_small, name};
use crate::pipeline::{sample_data, tiny_model};

/// How many times the operator created each Job and Deployment (server-side apply of a missing object answers
/// 201 Created, so creations are the 201s, whatever the verb).
fn creations(rel: &Release) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in rel.audit() {
        if (e.resource == "jobs" || e.resource == "deployments") && e.subresource.is_empty() && e.code == 201 {
            *out.entry(format!("{}/{}", e.resource, e.name)).or_insert(0) += 1;
        }
    }
    out
}

fn assert_created_once(rel: &Release) {
    let made = creations(rel);
    assert!(
        made.keys().any(|k| k.starts_with("jobs/")),
        "no Job creation in the audit log: {made:?}"
    );
    assert!(
        made.keys().any(|k| k.starts_with("deployments/")),
        "no Deployment creation: {made:?}"
    );
    let twice: Vec<_> = made.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
}

async fn holder(rel: &Release, client: &kube::Client) -> Option<String> {
    let lease: Value = rel.get(client, "Lease", "fireweave-ai").await?;
    lease["spec"]["holderIdentity"].as_str().map(String::from)
}

/// Waits until the Dataset's Job exists: the operator is in the middle of converging.
async fn mid_convergence(rel: &Release, client: &kube::Client, dataset: &str) {
    eventually(cluster::PATIENCE, "the Dataset's Job exists", || async {
        let jobs = rel
            .list(client, "Job", Some(&format!("app.kubernetes.io/instance={dataset}")))
            .await;
        if jobs.is_empty() {
            Err("no Job yet".to_string())
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_hands_over_to_the_standby() {
    let cp = cluster::shared();
    let rel = cp.install("leader", json!({}));
    let client = rel.client().await;
    sample_data(&rel);
    tiny_model(&rel);
    rel.start_operator("fireweave-ai-a").await;
    let first = eventually(cluster::PATIENCE, "a replica holds the Lease", || async {
        holder(&rel, &client).await.ok_or_else(|| "no holder".to_string())
    })
    .await;
    assert_eq!(first, "fireweave-ai-a");
    rel.start_operator("fireweave-ai-b").await;

    let docs = cpu_small(4, 2);
    for doc in [&docs.0, &docs.1, &docs.2] {
        rel.apply(&doc.to_string()).expect("apply");
    }
    mid_convergence(&rel, &client, &name(&docs.0)).await;
    rel.kill_operator("fireweave-ai-a");
    // The dead leader's Lease expires (15 s) and the standby takes it.
    eventually(cluster::PATIENCE, "the standby takes the Lease", || async {
        match holder(&rel, &client).await {
            Some(h) if h == "fireweave-ai-b" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    converge(&rel, &client, &docs).await;
    let lease = rel.get(&client, "Lease", "fireweave-ai").await.expect("Lease");
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1,
        "{}",
        lease["spec"]
    );
    assert_created_once(&rel);
    rel.assert_no_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_converges_the_same_way() {
    let cp = cluster::shared();
    let rel = cp.install("restart", json!({}));
    let client = rel.client().await;
    sample_data(&rel);
    tiny_model(&rel);
    rel.start_operator("fireweave-ai-1").await;
    let docs = cpu_small(4, 2);
    for doc in [&docs.0, &docs.1, &docs.2] {
        rel.apply(&doc.to_string()).expect("apply");
    }
    mid_convergence(&rel, &client, &name(&docs.0)).await;
    rel.kill_operator("fireweave-ai-1");
    // The Deployment's replacement Pod has a new name, so it waits for the dead one's Lease to expire.
    rel.start_operator("fireweave-ai-2").await;
    converge(&rel, &client, &docs).await;
    assert_eq!(holder(&rel, &client).await.as_deref(), Some("fireweave-ai-2"));
    assert_created_once(&rel);
    rel.assert_no_forbidden();
}
