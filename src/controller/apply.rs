//! Server-side apply with one field manager, skipped when the live object already holds every desired field:
//! a reconcile of an unchanged resource writes nothing.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::{CachedChild, CachedObject};
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

fn describe<K: Resource<DynamicType = ()>>(desired: &K) -> (String, String, String) {
    let meta = desired.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    (format!("{} {ns}/{name}", K::kind(&())), ns, name)
}

/// Makes the child hold `desired`. Without a request when the operator applied this same object last and
/// the watch still shows the child at the version that apply left (see [`AppliedMemo`]); with the apply
/// alone when the watch shows no such child; otherwise reads the live object and applies `desired` unless
/// it already matches. (No cache, as in the unit tests: always read, then apply if it differs.) Returns the live object when it was read
/// or written, `None` when nothing was asked of the API.
///
/// [`AppliedMemo`]: super::cache::AppliedMemo
pub async fn ensure<K>(ctx: &Context, api: &Api<K>, desired: &K) -> Result<Option<K>, Error>
where
    K: CachedChild + Serialize + DeserializeOwned + Clone + Debug,
{
    let (what, ns, name) = describe(desired);
    let live = match &ctx.cache {
        Some(cache) => match cache.child_meta::<K>(&ns, &name) {
            Some(seen) if ctx.applied.unchanged(desired, Some(&seen)) => return Ok(None),
            // Changed since, or applied before this process started: compare with the live object.
            Some(_) => api.get_opt(&name).await.map_err(kube_err(format!("get {what}")))?,
            // Not in the (synced) cache: it does not exist, or was made a moment ago and an apply of the
            // same object changes nothing.
            None => None,
        },
        None => api.get_opt(&name).await.map_err(kube_err(format!("get {what}")))?,
    };
    let (object, _) = apply(api, desired, live)
        .await
        .map_err(kube_err(format!("apply {what}")))?;
    ctx.applied.record(desired, object.meta());
    Ok(Some(object))
}

/// [`ensure`] for a child whose live state the reconcile goes on to read (a Job's or a Deployment's status):
/// the object as the API answered, or else as the cache holds it.
pub async fn ensure_read<K>(ctx: &Context, api: &Api<K>, desired: &K) -> Result<K, Error>
where
    K: CachedObject + Serialize + DeserializeOwned + Clone + Debug,
{
    if let Some(live) = ensure(ctx, api, desired).await? {
        return Ok(live);
    }
    let (what, ns, name) = describe(desired);
    match ctx.cache.as_ref().and_then(|c| K::cached(c, &ns, &name)) {
        Some(cached) => Ok(cached),
        // Gone from the store between the two looks (deleted just now): ask.
        None => api.get(&name).await.map_err(kube_err(format!("get {what}"))),
    }
}

/// Writes a custom resource's new status unless it is unchanged, and records an Event when the write ends
/// a step: a `Warning` for `Failed`, a `Normal` one for `Succeeded` and `Serving`. The steps between show in
/// the status and `kubectl get`; an Event each would double the writes of a run for no extra fact.
///
/// "Unchanged" is against the object the reconcile was handed, and against the last status this operator
/// wrote for the object: a reconcile can run on a copy from the watch that predates its previous write, and
/// must not write (or announce) the same thing twice.
pub async fn update_status<K>(ctx: &Context, api: &Api<K>, obj: &K, status: &K::Status) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + kube::core::object::HasStatus + DeserializeOwned + Clone + Debug,
    K::Status: Phased + Serialize + PartialEq,
{
    let old = obj.status();
    let uid = obj.meta().uid.clone().unwrap_or_default();
    if old == Some(status) || ctx.written.same(&uid, status) {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let what = format!(
        "status of {} {}/{name}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or("")
    );
    apply_status(api, &name, status).await.map_err(kube_err(what))?;
    let previous_phase = ctx.written.phase(&uid).or_else(|| old.and_then(|s| s.phase()));
    ctx.written.record(&uid, status);
    if let Some(new_phase) = status.phase().filter(|p| p.ends_a_step()) {
        let message = health_message(status.conditions());
        ctx.phase_event(obj, previous_phase, new_phase, &message).await;
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
