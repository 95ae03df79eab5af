//! Server-side apply with one field manager, skipped when the live object already holds every desired field:
//! a reconcile of an unchanged resource writes nothing.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{Context, Error, kube_err};
use super::workload::FIELD_MANAGER;
use crate::api::conditions::{Phased, health_message};

/// Whether every field of `desired` is present with the same value in `live` (objects recursively, lists
/// element by element). Fields the API server adds (defaults, status, managed fields) do not count.
pub fn is_subset(desired: &serde_json::Value, live: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, v)| l.get(k).is_some_and(|lv| is_subset(v, lv))),
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b)),
        (d, l) => d == l,
    }
}

/// Applies `desired` unless `live` already matches it; returns the object as it is now and whether it wrote.
pub async fn apply<K>(api: &Api<K>, desired: &K, live: Option<K>) -> Result<(K, bool), kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let want = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(live) = live {
        let have = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if is_subset(&want, &have) {
            return Ok((live, false));
        }
    }
    let name = desired.meta().name.clone().unwrap_or_default();
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    Ok((applied, true))
}

/// Reads the live object named like `desired` and applies `desired` unless the live one already matches it.
pub async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let meta = desired.meta();
    let what = format!(
        "{} {}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    );
    let live = api
        .get_opt(meta.name.as_deref().unwrap_or_default())
        .await
        .map_err(kube_err(format!("get {what}")))?;
    let (object, _) = apply(api, desired, live)
        .await
        .map_err(kube_err(format!("apply {what}")))?;
    Ok(object)
}

/// Writes a custom resource's new status unless it is unchanged, and records an Event when its phase changed
/// (a `Warning` for `Failed`).
pub async fn update_status<K>(ctx: &Context, api: &Api<K>, obj: &K, status: &K::Status) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + kube::core::object::HasStatus + DeserializeOwned + Clone + Debug,
    K::Status: Phased + Serialize + PartialEq,
{
    let old = obj.status();
    if let Some(new_phase) = status.phase() {
        let message = health_message(status.conditions());
        ctx.phase_event(obj, old.and_then(|s| s.phase()), new_phase, &message)
            .await;
    }
    if old != Some(status) {
        let name = obj.meta().name.clone().unwrap_or_default();
        let what = format!(
            "status of {} {}/{name}",
            K::kind(&()),
            obj.meta().namespace.as_deref().unwrap_or("")
        );
        apply_status(api, &name, status).await.map_err(kube_err(what))?;
    }
    Ok(())
}

/// Applies the `status` of custom resource `K` named `name` (one field manager for spec children and status).
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::is_subset;

    #[test]
    fn server_added_fields_do_not_count_but_changes_do() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a"}]}}});
        let live = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600,
                          "template": {"containers": [{"name": "a", "imagePullPolicy": "IfNotPresent"}]}}, "status": {}});
        assert!(is_subset(&desired, &live));
        assert!(!is_subset(&json!({"spec": {"replicas": 3}}), &live));
        assert!(!is_subset(&json!({"spec": {"template": {"containers": []}}}), &live));
    }
}
