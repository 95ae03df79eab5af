//! The operator's Kubernetes API rights, checked against the Helm chart (test-only module).
//!
//! The chart's ClusterRole and leader-election Role must grant exactly what the code asks for: nothing missing
//! (a forbidden call would stall every resource) and nothing extra (least privilege). The set the code uses is
//! not written down by hand: the operator runs — controllers, watches, reconciles, leader election, Events —
//! against the in-memory API server, and each request it records maps to the (API group, resource, verb) that
//! RBAC authorizes it by. The granted set is read from `manifests/install.yaml`, the chart's default render
//! (tests/chart/ keeps it equal to the chart and checks the namespaced Roles carry the same rules).

use std::collections::BTreeSet;

/// An RBAC permission: API group ("" for core), resource (with `/subresource`), verb.
pub type Permission = (String, String, String);

/// The permission RBAC checks for one request, from its method and `path?query`.
pub fn permission_of(method: &str, path_and_query: &str) -> Permission {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a Kubernetes API path: {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, collection) = match rest {
        [resource] => (resource.to_string(), true),
        [resource, _name] => (resource.to_string(), false),
        [resource, _name, sub] => (format!("{resource}/{sub}"), false),
        _ => panic!("unexpected API path shape: {path}"),
    };
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, collection) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (other, _) => panic!("unexpected method {other} for {path}"),
    };
    (group.to_string(), resource, verb.to_string())
}

/// Every permission the ClusterRoles and Roles in a multi-document YAML grant. Panics on a wildcard: RBAC
/// wildcards also cover resources that do not exist yet, which no test could account for.
pub fn granted(yaml: &str) -> BTreeSet<Permission> {
    use serde::Deserialize;
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("install.yaml parses");
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let strings = |rule: &serde_yaml::Value, key: &str| -> Vec<String> {
            rule.get(key)
                .and_then(|v| v.as_sequence())
                .into_iter()
                .flatten()
                .map(|s| s.as_str().expect("RBAC lists hold strings").to_string())
                .collect()
        };
        for rule in value.get("rules").and_then(|r| r.as_sequence()).into_iter().flatten() {
            for group in strings(rule, "apiGroups") {
                for resource in strings(rule, "resources") {
                    for verb in strings(rule, "verbs") {
                        assert!(
                            ![&group, &resource, &verb].contains(&&"*".to_string()),
                            "wildcard in a {kind} rule: {rule:?}"
                        );
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use clap::Parser;
    use kube::Api;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::config::{Args, Settings};
    use crate::controller::context::Context;
    use crate::controller::fake_api::{FakeApiServer, Recorded};
    use crate::controller::leader::LeaderElection;
    use crate::controller::{dataset, model_serving, operator, training_run};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    const NS: &str = "team";

    fn meta(name: &str, uid: &str) -> Value {
        json!({"name": name, "namespace": NS, "uid": uid, "generation": 1})
    }

    fn ready() -> Value {
        json!([{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    }

    /// Resources in the states that take every branch that talks to the API server: finalizers to add, an
    /// outdated training attempt whose Job must go, a serving whose NetworkPolicy must be created and one
    /// whose NetworkPolicy must be deleted.
    fn seed(fake: &FakeApiServer) {
        let artifact = json!({"uri": "datasets/team/fw/sha256-d", "digest": crate::contract::digest::fake("d")});
        let gguf = json!([{"quantization": "Q4_K_M", "uri": "runs/team/run/gguf/run-Q4_K_M.gguf",
                           "digest": format!("sha256:{}", "a".repeat(64)), "sizeBytes": 1}]);
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset", "metadata": meta("fw", "uid-ds"),
            "spec": {"sources": [{"path": "examples/data/fireweave"}], "artifactRetention": "Delete"},
            "status": {"phase": "Succeeded", "observedGeneration": 1, "artifact": artifact, "conditions": ready()}
        }));
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun", "metadata": meta("run", "uid-tr"),
            "spec": {"baseModel": {"path": "models/llama"}, "datasetRef": {"name": "fw"}, "artifactRetention": "Delete"},
            "status": {"phase": "Succeeded", "attempt": 1, "inputsDigest": crate::contract::digest::fake("older-inputs"), "dataset": artifact,
                       "conditions": ready(),
                       "artifacts": {"gguf": gguf, "chatFormat": "llama3"},
                       "passed": {"attempt": 1, "gguf": gguf, "chatFormat": "llama3"}}
        }));
        fake.insert(json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "run-attempt-1", "namespace": NS}
        }));
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing", "metadata": meta("closed", "uid-ms1"),
            "spec": {"model": {"trainingRunRef": {"name": "run"}},
                     "allowedClients": [{"podSelector": {"matchLabels": {"app": "fireweave-backend"}}}]}
        }));
        fake.insert(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing", "metadata": meta("open", "uid-ms2"),
            "spec": {"model": {"trainingRunRef": {"name": "run"}}}
        }));
        // Made by the operator while "open" still had allowedClients (so it carries the operator's label, which
        // is how its watch finds it); now the list is empty and the policy must go.
        fake.insert(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "open", "namespace": NS,
                         "labels": {"app.kubernetes.io/managed-by": "fireweave-ai-operator"}}
        }));
        // Children an earlier operator process made: a new process, which has not applied them itself,
        // reads them (get) before deciding whether to apply.
        let closed: crate::api::ModelServing = serde_json::from_value(
            fake.get(&format!(
                "/apis/ai.fireweave.io/v1alpha1/namespaces/{NS}/modelservings/closed"
            ))
            .expect("seeded"),
        )
        .expect("ModelServing");
        fake.insert(serde_json::to_value(crate::controller::model_serving::build::service(&closed)).expect("json"));
        let ds: crate::api::Dataset = serde_json::from_value(
            fake.get(&format!("/apis/ai.fireweave.io/v1alpha1/namespaces/{NS}/datasets/fw"))
                .expect("seeded"),
        )
        .expect("Dataset");
        fake.insert(serde_json::to_value(crate::controller::dataset::build::config_map(&ds)).expect("json"));
        fake.insert(
            serde_json::to_value(crate::controller::dataset::build::job(&ds, &Settings::example())).expect("json"),
        );
        let run: crate::api::TrainingRun = serde_json::from_value(
            fake.get(&format!(
                "/apis/ai.fireweave.io/v1alpha1/namespaces/{NS}/trainingruns/run"
            ))
            .expect("seeded"),
        )
        .expect("TrainingRun");
        use crate::controller::model_serving::build as ms;
        let model = crate::controller::model_serving::reconcile::wanted_model(&closed, Some(&run)).expect("a model");
        let config = ms::config_map(&closed, &model).expect("Modelfile");
        let deployment = ms::deployment(&closed, &model, &config, &Settings::example());
        fake.insert(serde_json::to_value(deployment).expect("json"));
        // Its policy from before allowedClients changed: re-applied.
        let mut policy = serde_json::to_value(ms::network_policy(&closed).expect("allowedClients")).expect("json");
        policy["spec"]["ingress"] = json!([]);
        fake.insert(policy);
    }

    /// What the requests need: each request's own permission; `watch` as well for a watcher's initial list
    /// (kube-runtime's watcher lists in pages of `watcher::Config::page_size`, then watches from that list's resourceVersion, and the
    /// fake's answer to a watch ends the stream, so a watcher's watch call may come only after a back-off);
    /// and `update` on an owner's `finalizers` for every owner reference with `blockOwnerDeletion` (the
    /// OwnerReferencesPermissionEnforcement admission plugin demands it).
    fn used(requests: &[Recorded]) -> BTreeSet<Permission> {
        let mut out = BTreeSet::new();
        for r in requests {
            let (group, resource, verb) = permission_of(&r.method, &r.path);
            let page = kube::runtime::watcher::Config::default().page_size.unwrap_or(500);
            if verb == "list" && r.path.contains(&format!("limit={page}")) {
                out.insert((group.clone(), resource.clone(), "watch".to_string()));
            }
            // A server-side apply of an object that does not exist yet creates it, and kube-apiserver then also
            // checks `create` (the in-memory server never did; the real one refused the operator's first apply).
            if verb == "patch" && r.path.contains("fieldManager=") && !resource.contains('/') {
                out.insert((group.clone(), resource.clone(), "create".to_string()));
            }
            out.insert((group, resource, verb));
            let owners = r
                .body
                .as_ref()
                .and_then(|b| b["metadata"]["ownerReferences"].as_array().cloned());
            for owner in owners.into_iter().flatten() {
                if owner["blockOwnerDeletion"] == true {
                    let group = owner["apiVersion"]
                        .as_str()
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("");
                    let kind = owner["kind"].as_str().unwrap_or("").to_lowercase();
                    out.insert((group.to_string(), format!("{kind}s/finalizers"), "update".into()));
                }
            }
        }
        out
    }

    fn show(set: &BTreeSet<Permission>) -> String {
        set.iter()
            .map(|(g, r, v)| format!("\n  {v} {r} (apiGroup {g:?})"))
            .collect()
    }

    #[tokio::test]
    async fn the_chart_grants_exactly_what_the_operator_uses() {
        let install = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/install.yaml"))
            .expect("manifests/install.yaml (python scripts/chart.py generate writes it)");
        let grants = granted(&install);
        let fake = FakeApiServer::new();
        seed(&fake);
        let mount = tempfile::tempdir().expect("tempdir");

        // The operator as the chart runs it (leader election on), watching one namespace.
        let cli = Cli::parse_from([
            "operator",
            "--namespaces",
            NS,
            "--http-addr",
            "127.0.0.1:0",
            "--artifact-mount",
            mount.path().to_str().expect("utf-8 path"),
        ]);
        let running = tokio::spawn(operator::run_with(fake.client(), cli.args));

        // Calls the loop makes only later or at shutdown: renewing and releasing the Lease (PUT), and an Event
        // repeated within the series window of `EventWriter` (a series patch).
        let election = LeaderElection::new(
            Api::namespaced(fake.client(), "fireweave-system"),
            "rbac-check",
            "pod-a",
            Duration::from_secs(15),
        );
        assert!(election.try_acquire().await.expect("create"));
        assert!(election.try_acquire().await.expect("renew"));
        election.release().await.expect("release");
        let ctx = Context::new(fake.client(), Settings::example());
        let ds: crate::api::Dataset = serde_json::from_value(
            fake.get(&format!("/apis/ai.fireweave.io/v1alpha1/namespaces/{NS}/datasets/fw"))
                .expect("seeded"),
        )
        .expect("Dataset");
        for _ in 0..2 {
            ctx.phase_event(&ds, None, crate::api::conditions::Phase::Running, "repeated")
                .await;
        }

        // The operator's loop: everything it does within a few seconds of starting (its watches are opened and
        // every seeded resource is reconciled almost at once; the deadline only bounds a broken run).
        let mut requests = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            requests.extend(fake.take_requests());
            if grants.is_subset(&used(&requests)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        requests.extend(fake.take_requests());
        running.abort();

        let uses = used(&requests);
        let missing: BTreeSet<_> = uses.difference(&grants).cloned().collect();
        let unused: BTreeSet<_> = grants.difference(&uses).cloned().collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "the operator's requests and charts/fireweave-ai/templates/rbac.yaml disagree (then run \
             `python scripts/chart.py generate`).\nUsed but not granted:{}\nGranted but never used:{}",
            show(&missing),
            show(&unused)
        );
    }

    #[test]
    fn requests_map_to_the_permissions_rbac_checks() {
        let cases = [
            (
                "GET",
                "/apis/batch/v1/namespaces/a/jobs?&watch=true&timeoutSeconds=290",
                ("batch", "jobs", "watch"),
            ),
            ("GET", "/apis/batch/v1/jobs?&limit=500", ("batch", "jobs", "list")),
            ("GET", "/api/v1/namespaces/a/configmaps/x", ("", "configmaps", "get")),
            (
                "PATCH",
                "/apis/ai.fireweave.io/v1alpha1/namespaces/a/datasets/x/status?&force=true",
                ("ai.fireweave.io", "datasets/status", "patch"),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                ("coordination.k8s.io", "leases", "update"),
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events?",
                ("events.k8s.io", "events", "create"),
            ),
            (
                "DELETE",
                "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/x",
                ("networking.k8s.io", "networkpolicies", "delete"),
            ),
        ];
        for (method, path, (g, r, v)) in cases {
            assert_eq!(
                permission_of(method, path),
                (g.to_string(), r.to_string(), v.to_string()),
                "{method} {path}"
            );
        }
        let yaml = "kind: Role\nrules:\n- apiGroups: ['']\n  resources: [pods, services]\n  verbs: [list]\n---\nkind: Service\n";
        let want: BTreeSet<Permission> = [("", "pods", "list"), ("", "services", "list")]
            .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
            .into();
        assert_eq!(granted(yaml), want);
    }

    #[test]
    #[should_panic(expected = "wildcard")]
    fn a_wildcard_grant_is_refused() {
        granted("kind: ClusterRole\nrules:\n- apiGroups: ['*']\n  resources: [pods]\n  verbs: [get]\n");
    }

    /// Worker Pods run as the configured ServiceAccount (the chart's, bound to nothing), or as the namespace's
    /// default one when none is configured; either way without a token.
    #[test]
    fn workers_run_as_the_configured_service_account() {
        let ds: crate::api::Dataset = serde_json::from_value(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "Dataset", "metadata": meta("fw", "u1"),
            "spec": {"sources": [{"path": "d"}]}}))
        .expect("Dataset");
        let tr: crate::api::TrainingRun = serde_json::from_value(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "TrainingRun", "metadata": meta("run", "u2"),
            "spec": {"baseModel": {"path": "m"}, "datasetRef": {"name": "fw"}}}))
        .expect("TrainingRun");
        let ms: crate::api::ModelServing = serde_json::from_value(json!({
            "apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing", "metadata": meta("ms", "u3"),
            "spec": {"model": {"gguf": {"path": "m.gguf", "sha256": "a".repeat(64)}}, "engine": "builtin"}}))
        .expect("ModelServing");
        let artifact = crate::api::ArtifactRef {
            uri: "d".into(),
            digest: crate::contract::Digest::of("d"),
        };
        let model = model_serving::reconcile::wanted_model(&ms, None).expect("gguf model");

        for account in [None, Some("fireweave-ai-worker")] {
            let settings = Settings {
                worker_service_account: account.map(String::from),
                ..Settings::example()
            };
            let pods = [
                serde_json::to_value(dataset::build::job(&ds, &settings)).expect("json")["spec"]["template"]["spec"].clone(),
                serde_json::to_value(training_run::build::job(&tr, 1, &artifact, &settings)).expect("json")["spec"]["template"]["spec"].clone(),
                serde_json::to_value(model_serving::build::deployment(&ms, &model, &model_serving::build::config_map(&ms, &model).unwrap(), &settings))
                    .expect("json")["spec"]["template"]["spec"].clone(),
            ];
            for pod in pods {
                assert_eq!(pod["serviceAccountName"], account.map_or(Value::Null, Value::from));
                assert_eq!(pod["automountServiceAccountToken"], false);
            }
        }
    }
}
