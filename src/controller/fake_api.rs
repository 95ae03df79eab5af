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

/// `METHOD path?query` of each request, for asserting the sequence a reconcile sent.
pub fn calls(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

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
    /// Off in the benchmark: 60,000 recorded bodies would dwarf what is being measured.
    not_recording: bool,
    resource_version: u64,
}

/// The fake API server; clones share state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

const PLURALS: [(&str, &str); 11] = [
    ("ConfigMap", "configmaps"),
    ("Job", "jobs"),
    ("Pod", "pods"),
    ("Deployment", "deployments"),
    ("Service", "services"),
    ("NetworkPolicy", "networkpolicies"),
    ("Dataset", "datasets"),
    ("TrainingRun", "trainingruns"),
    ("ModelServing", "modelservings"),
    ("Lease", "leases"),
    ("Event", "events"),
];

/// The REST path of an object from its apiVersion, kind, namespace and name.
pub fn object_path(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let kind = obj["kind"].as_str().unwrap_or("");
    let plural = PLURALS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| *p)
        .unwrap_or("unknown");
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
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
            // An existence term: the label is set, whatever its value.
            None => obj["metadata"]["labels"].get(term).is_some(),
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

fn conflict(path: &str, reason: &str) -> (StatusCode, Value) {
    (
        StatusCode::CONFLICT,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": 409,
               "message": format!("{path}: {reason}"), "metadata": {}}),
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

    /// Whether requests are recorded (on by default).
    pub fn set_recording(&self, on: bool) {
        self.lock().not_recording = !on;
    }

    /// Size of every stored object as compact JSON: what a cluster would hold, and roughly what the
    /// operator's watch caches of the same objects weigh.
    pub fn stored_bytes(&self) -> usize {
        self.lock()
            .objects
            .values()
            .map(|v| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0))
            .sum()
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
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let (code, value) = self.respond(&method, &path, &query, body);
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let mut resp = Response::new(Body::from(bytes));
        *resp.status_mut() = code;
        Ok(resp)
    }

    /// Records and answers one request; also what the benchmark's out-of-process server calls.
    pub fn respond(&self, method: &str, path: &str, query: &str, body: Option<Value>) -> (StatusCode, Value) {
        let full = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut s = self.lock();
        if !s.not_recording {
            s.requests.push(Recorded {
                method: method.to_string(),
                path: full,
                body: body.clone(),
            });
        }
        Self::answer(&mut s, method, path, query, body)
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
                // A range scan: the benchmark lists Pods of 1,000 Jobs among tens of thousands of objects.
                let items: Vec<Value> = s
                    .objects
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(k, v)| !k[prefix.len()..].contains('/') && labels_match(v, &selector))
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": s.resource_version.to_string()}, "items": items}),
                )
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
                    let Some(obj) = s.objects.get_mut(object_path) else {
                        return not_found(path);
                    };
                    merge(&mut obj["status"], &patch["status"]);
                    obj["metadata"]["resourceVersion"] = json!(rv);
                    return (StatusCode::OK, obj.clone());
                }
                let obj = s
                    .objects
                    .entry(path.to_string())
                    .or_insert_with(|| json!({"metadata": {"uid": format!("uid-{rv}")}}));
                let spec_before = obj["spec"].clone();
                merge(obj, &patch);
                obj["metadata"]["resourceVersion"] = json!(rv);
                // As the API server does: a spec change bumps metadata.generation (1 on creation), which is
                // what lets a controller tell a Deployment's old status from the one for the new template.
                if spec_before.is_null() || obj["spec"] != spec_before {
                    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                    obj["metadata"]["generation"] = json!(generation);
                }
                (StatusCode::OK, obj.clone())
            }
            "POST" => {
                let mut obj = body.unwrap_or(Value::Null);
                let name = obj["metadata"]["name"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("generated-{}", s.resource_version + 1));
                let at = format!("{path}/{name}");
                if s.objects.contains_key(&at) {
                    return conflict(&at, "AlreadyExists");
                }
                s.resource_version += 1;
                obj["metadata"]["name"] = json!(name);
                obj["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
                s.objects.insert(at, obj.clone());
                (StatusCode::CREATED, obj)
            }
            // Replace: like the API server, refuse a write based on an older resourceVersion.
            "PUT" => {
                let mut obj = body.unwrap_or(Value::Null);
                let Some(current) = s.objects.get(path) else {
                    return not_found(path);
                };
                let sent = obj["metadata"]["resourceVersion"].as_str();
                if sent.is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str()) {
                    return conflict(path, "Conflict");
                }
                s.resource_version += 1;
                obj["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
                s.objects.insert(path.to_string(), obj.clone());
                (StatusCode::OK, obj)
            }
            "DELETE" => match s.objects.remove(path) {
                Some(v) => (StatusCode::OK, v),
                None => not_found(path),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({"kind": "Status", "code": 405})),
        }
    }
}
