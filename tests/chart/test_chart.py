"""The Helm chart, rendered by the real Helm engine (Helm v4, embedded in helm-python-sdk).

Every object of every tested values set validates against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail) of the oldest supported and the newest known Kubernetes; generated files match
their sources; the operator is wired to the settings it reads, checked against the Rust sources.
"""
from __future__ import annotations

import json
import re

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, chart, find, objects, one, rust, rust_const

RELEASE_NS = chart.NAMESPACE
DIGEST = "sha256:" + "1" * 64

# Values sets beside the defaults: namespaced RBAC behind a private registry with pinned images and an existing
# claim; and everything optional switched on.
VARIANTS = {
    "default": {},
    "namespaced-private": {
        "rbac": {"scope": "namespace"},
        "watchNamespaces": ["ml-a", "ml-b"],
        "global": {"imageRegistry": "registry.example.internal", "imagePullSecrets": [{"name": "regcred"}]},
        "images": {"trainer": {"tag": "0.1.0-cuda12", "digest": DIGEST}},
        "artifacts": {"existingClaim": "shared-artifacts", "mountInOperator": False},
        "workers": {"serviceAccount": {"name": "ml-worker"}},
    },
    "observability": {
        "watchNamespaces": ["ml"],
        "crds": {"install": False},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitor": {"enabled": True},
        },
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "egress": {"apiServerCIDRs": ["192.0.2.10/32"]},
        },
        "dashboards": {"enabled": True, "namespace": "monitoring"},
        "operator": {"leaderElection": False, "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}]},
        "artifacts": {"storageClassName": "nfs", "size": "500Gi"},
    },
}
# The kubeVersion floor in Chart.yaml, and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.31.0", kubernetes_validate.utils.latest_version()]


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request):
    return request.param, VARIANTS[request.param], objects(chart.render(VARIANTS[request.param]))


def operator_env(objs) -> dict[str, str]:
    deployment = one(objs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


# --- generated files -------------------------------------------------------------------------------------------


def test_generated_files_match_their_sources(default_render):
    stale = [p.relative_to(ROOT) for p, text in chart.sources().items() if not p.exists() or p.read_text() != text]
    if chart.INSTALL.read_text() != chart.install_yaml(default_render):
        stale.append(chart.INSTALL.relative_to(ROOT))
    assert not stale, f"out of date: {stale}; run `python scripts/chart.py generate`"


def test_crd_templates_render_to_the_generated_crds(default_render):
    rendered = {o["metadata"]["name"]: o for o in find(objects(default_render), "CustomResourceDefinition")}
    committed = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    assert sorted(rendered) == sorted(c["metadata"]["name"] for c in committed)
    for crd in committed:
        got = json.loads(json.dumps(rendered[crd["metadata"]["name"]]))
        assert got["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert got["metadata"].pop("labels")["app.kubernetes.io/part-of"] == "fireweave-ai"
        assert got == crd


def test_crds_can_be_left_out():
    objs = objects(chart.render({"crds": {"install": False}}))
    assert not find(objs, "CustomResourceDefinition")


# --- schemas -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(variant, kube):
    _, _, objs = variant
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # no schema of the Prometheus Operator's CRDs is available offline; see test_monitoring_*
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} on Kubernetes {kube}: {e}")
        checked += 1
    assert checked >= 9


def test_helm_lint_is_clean():
    report = helm.lint(str(chart.CHART), strict=True, namespace=RELEASE_NS)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"operator": {"replicas": 2}}, "/operator/replicas"),
        ({"rbac": {"scope": "everything"}}, "/rbac/scope"),
        ({"images": {"ollama": {"digest": "latest"}}}, "/images/ollama/digest"),
        ({"artifacts": {"accessModes": []}}, "/artifacts/accessModes"),
        ({"operator": {"replica": 1}}, "replica"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
    ],
)
def test_the_values_schema_rejects_mistakes(values, complaint):
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.render(values)


# --- the operator and what it is told ----------------------------------------------------------------------------


def env_names_the_code_reads() -> set[str]:
    names = set()
    for path in ["src/controller/config.rs", "src/main.rs"]:
        names |= set(re.findall(r'env = "([A-Z_]+)"', rust(path)))
    for path in (ROOT / "src" / "controller").rglob("*.rs"):
        names |= set(re.findall(r'std::env::var\("([A-Z_]+)"\)', path.read_text()))
    return names


def test_the_operator_is_told_every_installation_setting(variant):
    name, values, objs = variant
    env = operator_env(objs)
    read = env_names_the_code_reads() | {"RUST_LOG"}
    extra = {e["name"] for e in values.get("operator", {}).get("extraEnv", [])}
    assert set(env) - extra <= read, f"the chart sets variables the operator never reads: {set(env) - read - extra}"
    flags = set(re.findall(r'env = "([A-Z_]+)"', rust("src/controller/config.rs")))
    # Unset means "all namespaces", the one flag the chart leaves out on purpose.
    expected = flags - ({"FIREWEAVE_NAMESPACES"} if not values.get("watchNamespaces") else set())
    assert expected <= set(env), f"not passed to the operator: {expected - set(env)}"
    assert env["FIREWEAVE_LEASE_NAME"] == "fireweave-ai"
    assert env["FIREWEAVE_LEADER_ELECTION"] == str(values.get("operator", {}).get("leaderElection", True)).lower()


def test_default_images_are_the_operators_defaults(default_render):
    env = operator_env(objects(default_render))
    config = rust("src/controller/config.rs")
    for var in ["FIREWEAVE_WORKER_IMAGE", "FIREWEAVE_TRAINER_IMAGE", "FIREWEAVE_SERVE_IMAGE", "FIREWEAVE_OLLAMA_IMAGE"]:
        m = re.search(rf'env = "{var}",\s*default_value = "([^"]+)"', config)
        assert m, f"config.rs: no default for {var}"
        assert env[var] == m.group(1), var
    cargo_version = re.search(r'^version = "([^"]+)"', rust("Cargo.toml"), re.M).group(1)
    assert yaml.safe_load((chart.CHART / "Chart.yaml").read_text())["appVersion"] == cargo_version


def test_registry_override_digests_and_pull_secrets():
    objs = objects(chart.render(VARIANTS["namespaced-private"]))
    env = operator_env(objs)
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.internal/fireweave/fireweave-ai:0.1.0"
    assert env["FIREWEAVE_WORKER_IMAGE"] == pod["containers"][0]["image"]
    assert env["FIREWEAVE_TRAINER_IMAGE"] == f"registry.example.internal/fireweave/fireweave-ai-trainer:0.1.0-cuda12@{DIGEST}"
    assert env["FIREWEAVE_OLLAMA_IMAGE"] == "registry.example.internal/ollama/ollama:0.12.6"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    # Worker Pods get the pull secret through their ServiceAccount, in every namespace they run in.
    for sa in find(objs, "ServiceAccount", "ml-worker"):
        assert sa["imagePullSecrets"] == [{"name": "regcred"}]


def test_pods_are_hardened(variant):
    _, _, objs = variant
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The same user as the worker Pods the operator creates, so files on the shared volume stay readable.
    assert pod["securityContext"]["runAsUser"] == int(re.search(r"RUN_AS_USER: i64 = (\d+);", rust("src/controller/security.rs")).group(1))
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
        assert {c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]} == {"/healthz", "/readyz"}
    assert one(objs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_probes_and_metrics_use_routes_the_operator_serves(default_render):
    routes = set(re.findall(r'\.route\("([^"]+)"', rust("src/controller/operator.rs")))
    assert {"/healthz", "/readyz", "/metrics"} <= routes


# --- RBAC and identities -----------------------------------------------------------------------------------------


def rules(role: dict) -> list[dict]:
    return role["rules"]


def test_rbac_has_no_wildcards_and_one_rule_per_resource(default_render):
    text = (chart.CHART / "templates" / "rbac.yaml").read_text()
    assert "*" not in re.sub(r"\{\{-? */\*.*?\*/ *-?\}\}", "", text, flags=re.S)
    for role in find(objects(default_render), "ClusterRole") + find(objects(default_render), "Role"):
        resources = [(g, r) for rule in rules(role) for g in rule["apiGroups"] for r in rule["resources"]]
        assert len(resources) == len(set(resources)), f"{role['metadata']['name']}: a resource in two rules"
        assert all(len(rule["resources"]) == 1 for rule in rules(role))


def test_every_rule_says_why(default_render):
    """Each rule of the rendered ClusterRole and leader-election Role comes right after its own comment."""
    text = chart.INSTALL.read_text()
    for kind in ("ClusterRole", "Role"):
        role = text[text.index(f"kind: {kind}\n") :].split("\n---\n")[0]
        lines = role[role.index("rules:") :].splitlines()[1:]
        starts = [i for i, line in enumerate(lines) if line.startswith("- apiGroups:")]
        assert starts, kind
        for i in starts:
            assert lines[i - 1].startswith("# "), f"{kind}: rule without a reason: {lines[i:i + 3]}"


def test_namespaced_rbac_grants_the_same_rules_per_namespace(default_render):
    cluster = one(objects(default_render), "ClusterRole")
    objs = objects(chart.render(VARIANTS["namespaced-private"]))
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")
    for ns in ["ml-a", "ml-b"]:
        assert rules(one(objs, "Role", "fireweave-ai", ns)) == rules(cluster)
        binding = one(objs, "RoleBinding", "fireweave-ai", ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fireweave-ai", "namespace": RELEASE_NS}]
    assert operator_env(objs)["FIREWEAVE_NAMESPACES"] == "ml-a,ml-b"
    # Without a list, namespace scope means the release namespace alone.
    alone = objects(chart.render({"rbac": {"scope": "namespace"}}))
    assert operator_env(alone)["FIREWEAVE_NAMESPACES"] == RELEASE_NS
    assert rules(one(alone, "Role", "fireweave-ai", RELEASE_NS)) == rules(cluster)


def test_leader_election_role_only_in_the_release_namespace(default_render):
    role = one(objects(default_render), "Role", "fireweave-ai-leader-election", RELEASE_NS)
    assert rules(role) == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    assert not find(objects(chart.render(VARIANTS["observability"])), "Role", "fireweave-ai-leader-election")


def test_workers_get_an_identity_with_no_rights(variant):
    name, values, objs = variant
    worker = values.get("workers", {}).get("serviceAccount", {}).get("name") or "fireweave-ai-worker"
    accounts = find(objs, "ServiceAccount", worker)
    namespaces = {RELEASE_NS, *values.get("watchNamespaces", [])}
    assert {a["metadata"]["namespace"] for a in accounts} == namespaces
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    for binding in find(objs, "RoleBinding") + find(objs, "ClusterRoleBinding"):
        assert all(s["name"] != worker for s in binding["subjects"]), binding["metadata"]["name"]
    assert operator_env(objs)["FIREWEAVE_WORKER_SERVICE_ACCOUNT"] == worker


def test_without_a_worker_account_the_operator_keeps_the_default_one():
    objs = objects(chart.render({"workers": {"serviceAccount": {"create": False}}}))
    assert "FIREWEAVE_WORKER_SERVICE_ACCOUNT" not in operator_env(objs)
    assert [a["metadata"]["name"] for a in find(objs, "ServiceAccount")] == ["fireweave-ai"]


# --- artifacts ---------------------------------------------------------------------------------------------------


def test_artifact_claim_is_created_and_kept(default_render):
    objs = objects(default_render)
    pvc = one(objs, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert operator_env(objs)["FIREWEAVE_ARTIFACT_PVC"] == pvc["metadata"]["name"]
    volumes = one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} in volumes


def test_an_existing_claim_is_used_and_not_created():
    objs = objects(chart.render(VARIANTS["namespaced-private"]))
    assert not find(objs, "PersistentVolumeClaim")
    assert operator_env(objs)["FIREWEAVE_ARTIFACT_PVC"] == "shared-artifacts"
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


# --- monitoring, network policy, dashboard -----------------------------------------------------------------------


def container_port_names() -> set[str]:
    names = set()
    for path in ["src/controller/dataset/build.rs", "src/controller/model_serving/build.rs"]:
        names |= set(re.findall(r'ContainerPort \{\s*name: Some\("([a-z-]+)"', rust(path)))
    return names


def test_monitoring_objects_select_what_the_operator_creates():
    objs = objects(chart.render(VARIANTS["observability"]))
    service = one(objs, "Service")
    sm = one(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    # The evaluation gauges name the TrainingRun's namespace; the scrape must keep it (not exported_namespace).
    assert all(e["honorLabels"] is True for e in sm["spec"]["endpoints"])
    assert '&["namespace", "trainingrun"]' in rust("src/controller/operator.rs")

    pm = one(objs, "PodMonitor")
    managed_by = rust_const("src/controller/workload.rs", "FIELD_MANAGER")
    assert pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": managed_by}
    components = {rust_const("src/controller/training_run/build.rs", "COMPONENT"), rust_const("src/controller/model_serving/build.rs", "COMPONENT")}
    assert set(pm["spec"]["selector"]["matchExpressions"][0]["values"]) == components
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
    endpoints = pm["spec"]["podMetricsEndpoints"]
    assert {e["port"] for e in endpoints} <= container_port_names()
    # Only the built-in server's container has /metrics on the API port.
    serve = next(e for e in endpoints if e["port"] == "http")
    assert serve["relabelings"][0] == {"sourceLabels": ["__meta_kubernetes_pod_container_name"], "regex": "serve", "action": "keep"}
    assert '"serve".into()' in rust("src/controller/model_serving/build.rs")
    everywhere = one(objects(chart.render({"metrics": {"podMonitor": {"enabled": True}}})), "PodMonitor")
    assert everywhere["spec"]["namespaceSelector"] == {"any": True}


def test_network_policy_admits_scrapes_and_reaches_the_api_and_trainers():
    objs = objects(chart.render(VARIANTS["observability"]))
    policy = one(objs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["from"] == VARIANTS["observability"]["networkPolicy"]["metricsFrom"]
    egress = policy["spec"]["egress"]
    assert {"ipBlock": {"cidr": "192.0.2.10/32"}} in egress[1]["to"]
    # The trainers' metrics port, which the operator scrapes for status.progress.
    port = int(re.search(r"WORKER_METRICS_PORT: i32 = (\d+);", rust("src/controller/workload.rs")).group(1))
    assert egress[2]["ports"] == [{"port": port, "protocol": "TCP"}]
    assert egress[2]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == rust_const(
        "src/controller/training_run/build.rs", "COMPONENT"
    )
    # Without the API server's addresses, egress stays open rather than cutting the operator off.
    open_egress = one(objects(chart.render({"networkPolicy": {"enabled": True}})), "NetworkPolicy")
    assert open_egress["spec"]["policyTypes"] == ["Ingress"] and "egress" not in open_egress["spec"]


def test_dashboard_configmap_carries_the_dashboard():
    objs = objects(chart.render(VARIANTS["observability"]))
    cm = one(objs, "ConfigMap", "fireweave-ai-dashboard", "monitoring")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["fireweave-ai.json"]) == json.loads((chart.CHART / "dashboards" / "fireweave-ai.json").read_text())


# --- NOTES.txt ---------------------------------------------------------------------------------------------------


def test_notes_name_files_and_resources_that_exist(default_render):
    notes = default_render["fireweave-ai/templates/NOTES.txt"]
    paths = set(re.findall(r"(?:manifests|examples|charts|crds)/[\w./-]+", notes))
    assert paths and all((ROOT / p.rstrip("/.")).exists() for p in paths), paths
    pipeline = [yaml.safe_load_all((ROOT / "manifests/examples/fireweave-pipeline.yaml").read_text())]
    names = {(d["kind"].lower(), d["metadata"]["name"]) for docs in pipeline for d in docs}
    assert ("modelserving", "network-security-expert") in names and "modelserving/network-security-expert" in notes
    # The ConfigMap and Secret NOTES tells the user to create are the ones the examples reference.
    example = (ROOT / "manifests/examples/fireweave-pipeline.yaml").read_text()
    assert "fireweave-sample-data" in example and "fireweave-sample-data" in notes
    assert "name: huggingface" in example and "secret generic huggingface" in notes
