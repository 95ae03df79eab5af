//! Helpers shared by the reconcile tests of the three controllers.

use std::future::Future;
use std::sync::Arc;

use kube::runtime::controller::Action;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::{Context, Error};
use super::fake_api::{FakeApiServer, Recorded, calls};

/// Reconciles the object stored at `path` as the controller runtime would hand it over.
pub async fn reconcile_at<K, F, Fut>(fake: &FakeApiServer, path: &str, ctx: &Arc<Context>, reconcile: F)
where
    K: DeserializeOwned,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let obj: K = serde_json::from_value(fake.get(path).expect("stored")).expect("deserializes");
    reconcile(Arc::new(obj), ctx.clone()).await.expect("reconcile succeeds");
}

/// The stored status of the object at `path`.
pub fn status_at(fake: &FakeApiServer, path: &str) -> Value {
    fake.get(path).expect("stored")["status"].clone()
}

/// Condition `type_` of a status, or null.
pub fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The requests that wrote something.
pub fn writes(requests: &[Recorded]) -> Vec<String> {
    calls(requests).into_iter().filter(|c| !c.starts_with("GET ")).collect()
}
