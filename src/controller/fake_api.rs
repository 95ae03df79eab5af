//! An in-memory Kubernetes API server behind `kube::Client`, for the controller tests and the benchmark.
//!
//! It stores objects by their REST path and answers the calls the controllers make (get, list with a label
//! selector, server-side apply and merge patches, status patches, create, delete), recording every request
//! (method, path with query, JSON body) so tests can assert exactly what a reconcile wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub body: Option<Value>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    resource_version: u64,
}

/// The fake API server; clones share state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

const PLURALS: [(&str, &str); 9] = [
    ("ConfigMap", "configmaps"),
    ("Job", "jobs"),
    ("Pod", "pods"),
    ("Deployment", "deployments"),
    ("Service", "services"),
    ("NetworkPolicy", "networkpolicies"),
    ("Dataset", "datasets"),
    ("TrainingRun", "trainingruns"),
    ("ModelServing", "modelservings"),
];

/// The REST path of an object from its apiVersion, kind, namespace and name.
pub fn object_path(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let kind = obj["kind"].as_str().unwrap_or("");
    let plural = PLURALS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p).unwrap_or("unknown");
    let prefix = if api_version.contains('/') { "apis" } else { "api" };
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    format!("/{prefix}/{api_version}/namespaces/{ns}/{plural}/{name}")
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
        None => false,
    })
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_found(path: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
               "message": format!("{path} not found"), "metadata": {}}),
    )
}

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let fake = fake.clone();
            async move { fake.handle(req).await }
        });
        kube::Client::new(service, "default")
    }

    /// Stores `obj` (any kind in the table above) as if created; returns its path.
    pub fn insert(&self, mut obj: Value) -> String {
        let path = object_path(&obj);
        let mut s = self.lock();
        s.resource_version += 1;
        obj["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
        s.objects.insert(path.clone(), obj);
        path
    }

    /// The stored object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Requests received since the last call.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the state itself is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, req: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
        let full = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let (code, value) = {
            let mut s = self.lock();
            s.requests.push(Recorded { method: method.clone(), path: full, body: body.clone() });
            Self::answer(&mut s, &method, &path, &query, body)
        };
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let mut resp = Response::new(Body::from(bytes));
        *resp.status_mut() = code;
        Ok(resp)
    }

    fn answer(s: &mut State, method: &str, path: &str, query: &str, body: Option<Value>) -> (StatusCode, Value) {
        let last = path.rsplit('/').next().unwrap_or("");
        let is_collection = PLURALS.iter().any(|(_, p)| *p == last);
        match method {
            "GET" if is_collection => {
                let selector = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="))
                    .map(decode)
                    .unwrap_or_default();
                let prefix = format!("{path}/");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(k, v)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/') && labels_match(v, &selector))
                    .map(|(_, v)| v.clone())
                    .collect();
                (StatusCode::OK, json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": s.resource_version.to_string()}, "items": items}))
            }
            "GET" => match s.objects.get(path) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => not_found(path),
            },
            "PATCH" => {
                let patch = body.unwrap_or(Value::Null);
                s.resource_version += 1;
                let rv = s.resource_version.to_string();
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(obj) = s.objects.get_mut(object_path) else { return not_found(path) };
                    merge(&mut obj["status"], &patch["status"]);
                    obj["metadata"]["resourceVersion"] = json!(rv);
                    return (StatusCode::OK, obj.clone());
                }
                let obj = s.objects.entry(path.to_string()).or_insert_with(|| json!({"metadata": {"uid": format!("uid-{rv}")}}));
                merge(obj, &patch);
                obj["metadata"]["resourceVersion"] = json!(rv);
                (StatusCode::OK, obj.clone())
            }
            "POST" => {
                let mut obj = body.unwrap_or(Value::Null);
                s.resource_version += 1;
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("generated-{}", s.resource_version));
                obj["metadata"]["name"] = json!(name);
                obj["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
                s.objects.insert(format!("{path}/{name}"), obj.clone());
                (StatusCode::CREATED, obj)
            }
            "DELETE" => match s.objects.remove(path) {
                Some(v) => (StatusCode::OK, v),
                None => not_found(path),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({"kind": "Status", "code": 405})),
        }
    }
}
