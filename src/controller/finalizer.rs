//! The artifact clean-up finalizer, present only on resources with `artifactRetention: Delete`: the one
//! case where state lives outside the cluster and must go before the resource does.

use std::fmt::Debug;
use std::path::Path;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{Error, kube_err};

pub const FINALIZER: &str = "ai.fireweave.io/artifact-cleanup";

/// What the reconcile should do about deletion.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not being deleted (the finalizer is in place if it is wanted): reconcile normally.
    Proceed,
    /// Being deleted and ours to clean up.
    CleanUp,
    /// Being deleted, nothing of ours to do.
    Done,
}

/// Adds the finalizer when wanted and missing, removes it when no longer wanted, and says what to do next.
pub async fn step<K>(api: &Api<K>, obj: &K, wanted: bool) -> Result<Step, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let has = obj.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = obj.meta().deletion_timestamp.is_some();
    match (deleting, has, wanted) {
        (true, true, _) => Ok(Step::CleanUp),
        (true, false, _) => Ok(Step::Done),
        (false, false, true) => {
            let mut finalizers = obj.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            set_finalizers(api, obj, finalizers).await?;
            Ok(Step::Proceed)
        }
        (false, true, false) => {
            release(api, obj).await?;
            Ok(Step::Proceed)
        }
        _ => Ok(Step::Proceed),
    }
}

/// Removes our finalizer, letting the deletion finish.
pub async fn release<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let finalizers = obj.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    set_finalizers(api, obj, finalizers).await
}

async fn set_finalizers<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    // The resourceVersion makes this a compare-and-swap: another controller's finalizer is never dropped.
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err(format!("finalizers of {}", obj.name_any())))?;
    Ok(())
}

/// Deletes `folder` (relative to the operator's mount of the artifact volume) when retention says so.
pub fn remove_artifacts(mount: &Path, folder: &Path, delete: bool) -> Result<(), Error> {
    if !delete {
        return Ok(());
    }
    let path = mount.join(folder);
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cleanup {
            path: path.display().to_string(),
            source,
        }),
    }
}
