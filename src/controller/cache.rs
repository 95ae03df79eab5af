//! The operator's copy of what it reads between reconciles: one watch per kind and namespace scope, shared by
//! every controller that needs that kind, feeding a reflector `Store` the reconciles read instead of the API.
//!
//! On a real control plane the reads were the cost: every reconcile used to GET each child before applying
//! it (to skip an unchanged apply) and LIST its Job's Pods, ~450 requests/s for 2,000 resources, and
//! kube-apiserver's CPU set the pace. Now a reconcile reads these stores, and asks the API only when a
//! store cannot prove what it needs (see [`AppliedMemo`] and [`Cache::job_pods`]).
//!
//! What is kept is trimmed to what the reconciles read, so that memory follows the number of objects, not
//! their size: no `managedFields` anywhere, only metadata for the children whose contents the operator
//! never reads (ConfigMaps, Services, NetworkPolicies), metadata and status of Jobs and Deployments, and of
//! a Job Pod its container names (the order of the steps) and their states (see [`super::slim`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Serialize;

use super::slim::{JobPod, SlimDeployment, SlimJob};
use super::workload::FIELD_MANAGER;
use crate::api::conditions::{Phase, Phased};
use crate::api::{Dataset, ModelServing, TrainingRun};

/// Every child the operator creates carries this label, so the child watches see only ours.
pub fn children_selector() -> String {
    format!("app.kubernetes.io/managed-by={FIELD_MANAGER}")
}

/// How many events a shared watch buffers per subscriber before it waits for the slowest one. The buffer is
/// allocated whole when the watch starts, for each kind and namespace: at 1,024 the buffers were 8 MiB of the
/// operator's 72 MiB peak heap with 10 namespaces. Subscribers only hand the object to their controller's
/// queue, so they never fall far behind, and a full buffer only makes the watch wait, it loses nothing.
const SUBSCRIBER_BUFFER: usize = 128;

/// The stores of one namespace scope (a namespace, or the whole cluster).
#[derive(Clone)]
pub struct Scope {
    pub datasets: Store<Dataset>,
    pub runs: Store<TrainingRun>,
    pub servings: Store<ModelServing>,
    pub jobs: Store<SlimJob>,
    pub pods: Store<JobPod>,
    pub deployments: Store<SlimDeployment>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub policies: Store<PartialObjectMeta<NetworkPolicy>>,
}

/// The event streams one scope's controllers are driven by (each a subscription to a shared watch).
pub struct Triggers {
    pub datasets: Vec<ReflectHandle<Dataset>>,
    pub runs: Vec<ReflectHandle<TrainingRun>>,
    pub servings: Vec<ReflectHandle<ModelServing>>,
    pub jobs: Vec<ReflectHandle<SlimJob>>,
    pub deployments: Vec<ReflectHandle<SlimDeployment>>,
    pub config_maps: Vec<ReflectHandle<PartialObjectMeta<ConfigMap>>>,
    pub services: Vec<ReflectHandle<PartialObjectMeta<Service>>>,
    pub policies: Vec<ReflectHandle<PartialObjectMeta<NetworkPolicy>>>,
}

/// An API of a namespaced kind in one namespace, or in all of them.
pub fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
    client: &Client,
    ns: &Option<String>,
) -> Api<K> {
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The next of a kind's subscriptions, for one consumer.
pub fn take<T>(subscriptions: &mut Vec<T>) -> T {
    subscriptions
        .pop()
        .expect("Scope::start opens one subscription per consumer")
}

/// Starts one shared watch: its store, `subscribers` event streams, and the task that drives it (the
/// caller keeps it running; a watch error is logged and retried with backoff).
fn shared<K, S>(
    kind: &'static str,
    events: S,
    subscribers: usize,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> (Store<K>, Vec<ReflectHandle<K>>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
    let handles = (0..subscribers)
        .map(|_| writer.subscribe().expect("a shared store hands out subscriptions"))
        .collect();
    tasks.push(tokio::spawn(events.default_backoff().reflect_shared(writer).for_each(
        move |event| async move {
            if let Err(e) = event {
                tracing::warn!(kind, error = %e, "watch failed; retrying");
            }
        },
    )));
    (store, handles)
}

/// Every object of one of our kinds in the scope, without what no reconcile reads.
fn every<K>(
    client: &Client,
    ns: &Option<String>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    watcher(api(client, ns), watcher::Config::default()).modify(|o: &mut K| trimmed_meta(o.meta_mut()))
}

fn trimmed_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    // kubectl's last-applied copy of the whole object, when someone used client-side apply.
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

impl Scope {
    /// Opens the watches of one scope. Returns the stores and, for the controllers, their event streams:
    /// two of Datasets (their controller; the TrainingRuns that read them), two of TrainingRuns (theirs; the
    /// servings), two of Jobs (the Dataset and TrainingRun controllers), three of ConfigMaps, one of each of
    /// the rest.
    pub fn start(
        client: &Client,
        ns: &Option<String>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> (Scope, Triggers) {
        let ours = || watcher::Config::default().labels(&children_selector());
        let (datasets, ds_t) = shared("Dataset", every::<Dataset>(client, ns), 2, tasks);
        let (runs, tr_t) = shared("TrainingRun", every::<TrainingRun>(client, ns), 2, tasks);
        let (servings, ms_t) = shared("ModelServing", every::<ModelServing>(client, ns), 1, tasks);
        let (jobs, job_t) = shared(
            "Job",
            watcher(api(client, ns), ours()).modify(|j: &mut SlimJob| trimmed_meta(&mut j.metadata)),
            2,
            tasks,
        );
        let (deployments, dep_t) = shared(
            "Deployment",
            watcher(api(client, ns), ours()).modify(|d: &mut SlimDeployment| trimmed_meta(&mut d.metadata)),
            1,
            tasks,
        );
        let (config_maps, cm_t) = shared(
            "ConfigMap",
            watcher(api::<PartialObjectMeta<ConfigMap>>(client, ns), ours()).modify(|m| trimmed_meta(&mut m.metadata)),
            3,
            tasks,
        );
        let (services, svc_t) = shared(
            "Service",
            watcher(api::<PartialObjectMeta<Service>>(client, ns), ours()).modify(|m| trimmed_meta(&mut m.metadata)),
            1,
            tasks,
        );
        let (policies, np_t) = shared(
            "NetworkPolicy",
            watcher(api::<PartialObjectMeta<NetworkPolicy>>(client, ns), ours())
                .modify(|m| trimmed_meta(&mut m.metadata)),
            1,
            tasks,
        );
        // Job Pods (the Job controller copies the template's labels, ours included, and adds `job-name`);
        // nothing subscribes: a Pod's change reaches its owner through the Job's status.
        let (pods, pods_writer) = reflector::store();
        let pod_config = watcher::Config::default().labels(&format!("{},job-name", children_selector()));
        let pod_events = watcher(api::<JobPod>(client, ns), pod_config).modify(|p| {
            let meta = &mut p.metadata;
            trimmed_meta(meta);
            (meta.annotations, meta.owner_references, meta.finalizers) = (None, None, None);
        });
        tasks.push(tokio::spawn(
            reflector::reflector(pods_writer, pod_events.default_backoff()).for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(kind = "Pod", error = %e, "watch failed; retrying");
                }
            }),
        ));
        let scope = Scope {
            datasets,
            runs,
            servings,
            jobs,
            pods,
            deployments,
            config_maps,
            services,
            policies,
        };
        let triggers = Triggers {
            datasets: ds_t,
            runs: tr_t,
            servings: ms_t,
            jobs: job_t,
            deployments: dep_t,
            config_maps: cm_t,
            services: svc_t,
            policies: np_t,
        };
        (scope, triggers)
    }

    /// Waits until every store of the scope has its first complete list.
    pub async fn wait_until_ready(&self) {
        listed(&self.datasets).await;
        listed(&self.runs).await;
        listed(&self.servings).await;
        listed(&self.jobs).await;
        listed(&self.pods).await;
        listed(&self.deployments).await;
        listed(&self.config_maps).await;
        listed(&self.services).await;
        listed(&self.policies).await;
    }
}

/// Waits for a store's first complete list. `Store::wait_until_ready` wakes only the last of several
/// concurrent waiters on the same store (a one-shot channel keeps one waker), and the controller runtime
/// waits on the same stores, so a lone wait can sleep forever: each wait is bounded and repeated, and a
/// repeat finds the store ready at once.
async fn listed<K>(store: &Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    while tokio::time::timeout(std::time::Duration::from_millis(250), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// The stores of every scope the operator watches.
#[derive(Clone, Default)]
pub struct Cache {
    scopes: Vec<Scope>,
}

fn find<K>(stores: impl Iterator<Item = Store<K>>, ns: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let key = ObjectRef::new(name).within(ns);
    stores.into_iter().find_map(|s| s.get(&key))
}

impl Cache {
    pub fn new(scopes: Vec<Scope>) -> Self {
        Self { scopes }
    }

    pub fn dataset(&self, ns: &str, name: &str) -> Option<Arc<Dataset>> {
        find(self.scopes.iter().map(|s| s.datasets.clone()), ns, name)
    }

    pub fn run(&self, ns: &str, name: &str) -> Option<Arc<TrainingRun>> {
        find(self.scopes.iter().map(|s| s.runs.clone()), ns, name)
    }

    pub fn job(&self, ns: &str, name: &str) -> Option<Job> {
        find(self.scopes.iter().map(|s| s.jobs.clone()), ns, name).map(|j| j.to_job())
    }

    pub fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        find(self.scopes.iter().map(|s| s.deployments.clone()), ns, name).map(|d| d.to_deployment())
    }

    /// The metadata of child `name` of kind `K` in `ns`, as the watch last saw it.
    pub fn child_meta<K: CachedChild>(&self, ns: &str, name: &str) -> Option<ObjectMeta> {
        K::cached_meta(self, ns, name)
    }

    /// The Pods of Job `job` in `ns` (the `job-name` label), in creation order.
    pub fn job_pods(&self, ns: &str, job: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .scopes
            .iter()
            .flat_map(|s| {
                s.pods.state_filter(|p| {
                    p.metadata.namespace.as_deref() == Some(ns)
                        && p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("job-name"))
                            .map(String::as_str)
                            == Some(job)
                })
            })
            .map(|p| p.to_pod())
            .collect();
        pods.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
        pods
    }
}

/// A kind of child whose live metadata the cache holds.
pub trait CachedChild: Resource<DynamicType = ()> + Sized {
    fn cached_meta(cache: &Cache, ns: &str, name: &str) -> Option<ObjectMeta>;
}

macro_rules! meta_only_child {
    ($kind:ty, $field:ident) => {
        impl CachedChild for $kind {
            fn cached_meta(cache: &Cache, ns: &str, name: &str) -> Option<ObjectMeta> {
                find(cache.scopes.iter().map(|s| s.$field.clone()), ns, name).map(|o| o.metadata.clone())
            }
        }
    };
}
meta_only_child!(ConfigMap, config_maps);
meta_only_child!(Service, services);
meta_only_child!(NetworkPolicy, policies);
meta_only_child!(Job, jobs);
meta_only_child!(Deployment, deployments);

/// A kind of child whose status the cache holds besides its metadata, because a reconcile reads it: the
/// object rebuilt from what the store keeps.
pub trait CachedObject: CachedChild + Clone {
    fn cached(cache: &Cache, ns: &str, name: &str) -> Option<Self>;
}

impl CachedObject for Job {
    fn cached(cache: &Cache, ns: &str, name: &str) -> Option<Self> {
        cache.job(ns, name)
    }
}

impl CachedObject for Deployment {
    fn cached(cache: &Cache, ns: &str, name: &str) -> Option<Self> {
        cache.deployment(ns, name)
    }
}

/// What the operator last applied to each child, and the version it left that child at. A reconcile whose
/// desired object is the one it applied last, to a child the watch still shows at that version, has nothing
/// to write and nothing to read. Anything else — a change of ours, someone else's edit (a new generation or
/// resourceVersion), a deleted child, a restarted operator with an empty memo — goes the long way: read the
/// live object, apply if it differs, remember the result.
#[derive(Default)]
pub struct AppliedMemo {
    entries: Mutex<HashMap<String, (u64, String)>>,
}

/// A child's version for the memo: its generation where the kind keeps one (only spec changes move it, so
/// the status a Job or Deployment controller writes does not count as a change), else its resourceVersion.
pub fn version(meta: &ObjectMeta) -> String {
    match meta.generation {
        Some(g) => format!("generation {g}"),
        None => format!("resourceVersion {}", meta.resource_version.as_deref().unwrap_or("")),
    }
}

/// A fingerprint of a desired object (its JSON; the hasher has fixed keys, so it is stable in a process).
pub fn fingerprint<K: Serialize>(desired: &K) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(desired).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl AppliedMemo {
    fn key<K: Resource<DynamicType = ()>>(desired: &K) -> String {
        let m = desired.meta();
        format!(
            "{}/{}/{}",
            K::kind(&()),
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or("")
        )
    }

    /// Whether `desired` was applied last to the child the watch shows as `live`, still at that version.
    pub fn unchanged<K: Resource<DynamicType = ()> + Serialize>(&self, desired: &K, live: Option<&ObjectMeta>) -> bool {
        let Some(live) = live else {
            return false;
        };
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&Self::key(desired))
            .is_some_and(|(f, v)| *f == fingerprint(desired) && *v == version(live))
    }

    /// Remembers that the child now holds `desired` at the version of `live` (the apply's answer, or the
    /// object read back and found to match).
    pub fn record<K: Resource<DynamicType = ()> + Serialize>(&self, desired: &K, live: &ObjectMeta) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(Self::key(desired), (fingerprint(desired), version(live)));
    }

    /// Forgets a child (deleted by the operator).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, desired: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&Self::key(desired));
    }
}

/// The last status the operator wrote for each custom resource (by UID, so a resource deleted and made
/// again starts afresh), as a fingerprint with the condition timestamps left out — a reconcile on a stale
/// copy computes the same status again, only with a new `lastTransitionTime` — and its phase.
#[derive(Default)]
pub struct WrittenStatus {
    entries: Mutex<HashMap<String, (u64, Option<Phase>)>>,
}

fn timeless_fingerprint<S: Serialize>(status: &S) -> u64 {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("lastTransitionTime");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(status).unwrap_or_default();
    strip(&mut value);
    fingerprint(&value)
}

impl WrittenStatus {
    /// Whether `status` is what was written last for `uid`, timestamps aside.
    pub fn same<S: Serialize>(&self, uid: &str, status: &S) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(uid)
            .is_some_and(|(f, _)| *f == timeless_fingerprint(status))
    }

    /// The phase written last for `uid`.
    pub fn phase(&self, uid: &str) -> Option<Phase> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(uid).and_then(|(_, p)| *p)
    }

    pub fn record<S: Serialize + Phased>(&self, uid: &str, status: &S) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(uid.to_string(), (timeless_fingerprint(status), status.phase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("spec".into()),
                namespace: Some("ai".into()),
                ..Default::default()
            },
            data: Some([("spec.json".to_string(), data.to_string())].into()),
            ..Default::default()
        }
    }

    fn at(rv: &str, generation: Option<i64>) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some(rv.into()),
            generation,
            ..Default::default()
        }
    }

    #[test]
    fn only_the_same_desired_object_at_the_same_version_is_unchanged() {
        let memo = AppliedMemo::default();
        assert!(!memo.unchanged(&cm("a"), Some(&at("7", None))), "nothing applied yet");
        memo.record(&cm("a"), &at("7", None));
        assert!(memo.unchanged(&cm("a"), Some(&at("7", None))));
        assert!(
            !memo.unchanged(&cm("b"), Some(&at("7", None))),
            "our desired object changed"
        );
        assert!(!memo.unchanged(&cm("a"), Some(&at("8", None))), "someone else wrote it");
        assert!(!memo.unchanged(&cm("a"), None), "deleted (or not seen yet)");
        memo.forget(&cm("a"));
        assert!(!memo.unchanged(&cm("a"), Some(&at("7", None))));
    }

    #[test]
    fn the_generation_stands_for_the_version_where_the_kind_keeps_one() {
        let memo = AppliedMemo::default();
        memo.record(&cm("a"), &at("7", Some(2)));
        // A status write (the Job or Deployment controller's) moves resourceVersion, not generation.
        assert!(memo.unchanged(&cm("a"), Some(&at("9", Some(2)))));
        assert!(!memo.unchanged(&cm("a"), Some(&at("10", Some(3)))));
    }
}
