//! Kubernetes Events (`events.k8s.io/v1`) on our resources, with repeats folded into a series.
//!
//! kube-runtime's `Recorder` does the same, but to fold repeats it keeps every Event it wrote, whole, for six
//! minutes: when a thousand runs finish within a minute that was 9 MiB of the operator's 72 MiB peak heap
//! (heaptrack under `benches/operator_converge_cluster.rs`). This writer keeps, per object and reason, only
//! what a series patch needs: the Event's name, its count and when it was last seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long a repeat still joins the series of the first Event (the window kube-runtime and client-go use).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What a reconcile reports: `Normal` or `Warning`, a CamelCase reason, a human note.
#[derive(Clone, Debug)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Writes Events as `reporting_controller` / `instance` (the Pod name when there is one).
pub struct EventWriter {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<HashMap<SeriesKey, Recent>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SeriesKey {
    uid: String,
    reason: String,
    warning: bool,
}

struct Recent {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

impl EventWriter {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Mutex::default(),
        }
    }

    /// Creates the Event, or, when the same object had the same reason within [`SERIES_WINDOW`], patches that
    /// Event's series count instead (what `kubectl events` shows as "(x3 over 2m)").
    pub async fn publish(&self, note: &Note, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = SeriesKey {
            uid: regarding.uid.clone().unwrap_or_else(|| {
                format!(
                    "{}/{}",
                    regarding.namespace.as_deref().unwrap_or_default(),
                    regarding.name.as_deref().unwrap_or_default()
                )
            }),
            reason: note.reason.clone(),
            warning: note.warning,
        };
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, r| r.last.elapsed() < SERIES_WINDOW);
            recent.get_mut(&key).map(|r| {
                r.count += 1;
                r.last = Instant::now();
                (r.namespace.clone(), r.name.clone(), r.count)
            })
        };
        let now = MicroTime(Timestamp::now());
        if let Some((ns, name, count)) = repeat {
            let series = Event {
                series: Some(EventSeries {
                    count,
                    last_observed_time: now.clone(),
                }),
                ..Default::default()
            };
            let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                // Someone deleted the first Event: this one starts a new series.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => return other.map(|_| ()),
            }
        }
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
        let object = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        // A name is at most 253 characters; the suffix (a dot and up to 32 hex digits) must survive.
        let object: String = object.chars().take(253 - 33).collect();
        let name = format!("{object}.{:x}", now.0.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            action: Some("Reconcile".to_string()),
            reason: Some(note.reason.clone()),
            note: Some(note.note.clone()),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(now),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        events.create(&PostParams::default(), &event).await?;
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            Recent {
                namespace: ns,
                name,
                count: 1,
                last: Instant::now(),
            },
        );
        Ok(())
    }
}
