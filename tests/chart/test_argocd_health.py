"""The Argo CD health check (charts/fireweave-ai/argocd/health.lua) run by real Lua interpreters on statuses shaped
as the operator writes them: Debian's lua5.1 (the language version of Argo CD's gopher-lua) and lua5.4."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import chart, rust

INTERPRETERS = ["lua5.1", "lua5.4"]
T = "2026-01-01T00:00:00Z"


def lua_literal(value) -> str:
    """A Lua table constructor for JSON-like data (null becomes nil, as Argo CD converts it)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this text
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def health(interpreter: str, obj: dict) -> tuple[str, str]:
    script = chart.HEALTH_LUA.read_text()
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = (function()\n{script}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message)\n'
    )
    out = subprocess.run([interpreter, "-"], input=program, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\n")
    return status, message


def conditions(true: str, reason: str, message: str, generation: int = 1) -> list[dict]:
    """Ready/Reconciling/Stalled with exactly one True, as set_health writes them."""
    return [
        {"type": t, "status": "True" if t == true else "False", "reason": reason,
         "message": message if t == true or t == "Ready" else "", "observedGeneration": generation,
         "lastTransitionTime": T}
        for t in ("Ready", "Reconciling", "Stalled")
    ]


def resource(kind: str, status: dict | None, generation: int | None = 1, spec: dict | None = None) -> dict:
    obj = {"apiVersion": "ai.fireweave.io/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "namespace": "ns"}, "spec": spec or {}}
    if generation is not None:
        obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


def st(phase: str | None, true: str, reason: str, message: str, observed: int = 1, cond_gen: int | None = None) -> dict:
    s = {"observedGeneration": observed, "conditions": conditions(true, reason, message, cond_gen or observed)}
    if phase:
        s["phase"] = phase
    return s


CASES = [
    # (name, object, expected health, expected message or None for "any")
    ("new, no status yet", resource("Dataset", None), "Progressing", "Waiting for the operator to reconcile this Dataset"),
    ("dataset job running", resource("Dataset", st("Running", "Reconciling", "JobRunning", "Job fw-1 is building the dataset")),
     "Progressing", "Job fw-1 is building the dataset"),
    ("dataset built", resource("Dataset", st("Succeeded", "Ready", "Succeeded", "kept 180 of 200 examples")),
     "Healthy", "kept 180 of 200 examples"),
    ("dataset job failed", resource("Dataset", st("Failed", "Stalled", "JobFailed", "BackoffLimitExceeded")),
     "Degraded", "BackoffLimitExceeded"),
    ("spec edited, status still for the old generation",
     resource("Dataset", st("Succeeded", "Ready", "Succeeded", "kept 180"), generation=2),
     "Progressing", "Waiting for the operator to observe generation 2"),
    ("status written but no observedGeneration yet", resource("Dataset", {"phase": "Pending"}, generation=3),
     "Progressing", "Waiting for the operator to observe generation 3"),
    ("Ready condition older than the status", resource("Dataset", st("Succeeded", "Ready", "Succeeded", "ok", observed=2, cond_gen=1), generation=2),
     "Progressing", "Waiting for the operator to observe generation 2"),
    ("failed phase without conditions", resource("Dataset", {"phase": "Failed", "observedGeneration": 1}),
     "Degraded", "Dataset failed"),
    ("phase only", resource("Dataset", {"phase": "Pending", "observedGeneration": 1}), "Progressing", "Phase Pending"),
    ("no generation on the object", resource("Dataset", st("Succeeded", "Ready", "Succeeded", "ok"), generation=None),
     "Healthy", "ok"),
    ("stalled message empty: the reason shows",
     resource("Dataset", {"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True", "reason": "ResultUnreadable", "message": ""}]}),
     "Degraded", "ResultUnreadable"),
    ("run waits for its dataset", resource("TrainingRun", st("Pending", "Reconciling", "WaitingForDataset", "Dataset fw is not Ready yet")),
     "Progressing", "Dataset fw is not Ready yet"),
    ("run training", resource("TrainingRun", st("Training", "Reconciling", "Training", "attempt 1 is training (step 150/750 (20%))")),
     "Progressing", "attempt 1 is training (step 150/750 (20%))"),
    ("run quantizing", resource("TrainingRun", st("Quantizing", "Reconciling", "Quantizing", "attempt 1 is writing GGUF files")),
     "Progressing", None),
    ("run succeeded", resource("TrainingRun", st("Succeeded", "Ready", "Succeeded", "trained 750 steps")), "Healthy", "trained 750 steps"),
    ("run failed", resource("TrainingRun", st("Failed", "Stalled", "JobFailed", "OOMKilled")), "Degraded", "OOMKilled"),
    ("serving waits for its run", resource("ModelServing", st("Pending", "Reconciling", "WaitingForTrainingRun", "TrainingRun r has no GGUF yet"), spec={"replicas": 1}),
     "Progressing", "TrainingRun r has no GGUF yet"),
    ("serving rolls out", resource("ModelServing", st("RollingOut", "Reconciling", "RollingOut", "rolling out abc: 1/2 replicas updated"), spec={"replicas": 2}),
     "Progressing", None),
    ("serving", resource("ModelServing", st("Serving", "Ready", "ModelServed", "2 replica(s) serve m"), spec={"replicas": 2}),
     "Healthy", "2 replica(s) serve m"),
    ("scaled to zero", resource("ModelServing", st("Serving", "Ready", "ModelServed", "0 replica(s) serve m"), spec={"replicas": 0}),
     "Suspended", "Scaled to zero replicas"),
    ("scaled to zero but failed", resource("ModelServing", st("Failed", "Stalled", "InvalidSpec", "bad"), spec={"replicas": 0}),
     "Degraded", "bad"),
    ("scaled to zero, spec change not yet seen", resource("ModelServing", st("Serving", "Ready", "ModelServed", "m"), generation=2, spec={"replicas": 0}),
     "Progressing", None),
]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("name, obj, want, message", CASES, ids=[c[0] for c in CASES])
def test_health(interpreter, name, obj, want, message):
    assert shutil.which(interpreter), f"{interpreter} is not installed (scripts/provision.sh installs it)"
    got, got_message = health(interpreter, obj)
    assert got == want, f"{name}: {got} ({got_message})"
    if message is not None:
        assert got_message == message


def test_every_health_argo_knows_is_reachable():
    reached = {c[2] for c in CASES}
    assert reached == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_the_conditions_checked_are_the_ones_the_operator_writes():
    script = chart.HEALTH_LUA.read_text()
    written = dict(re.findall(r'pub const (READY|RECONCILING|STALLED): &str = "(\w+)";', rust("src/api/conditions.rs")))
    assert set(written.values()) == {"Ready", "Reconciling", "Stalled"}
    for name in written.values():
        assert f'"{name}"' in script
    # Every phase the Lua names is one a status documents.
    phases = set(re.findall(r'status\.phase == "(\w+)"', script))
    documented = " ".join(rust(f"src/api/{f}.rs") for f in ("dataset", "training_run", "model_serving"))
    assert phases and all(f"`{p}`" in documented for p in phases)


def test_argocd_cm_registers_the_check_for_the_three_kinds():
    import yaml

    data = yaml.safe_load(chart.ARGOCD_CM.read_text())["data"]
    assert set(data) == {f"resource.customizations.health.ai.fireweave.io_{k}" for k in chart.KINDS}
    assert all(v.strip() == chart.HEALTH_LUA.read_text().strip() for v in data.values())
    kinds = set(re.findall(r'kind = "(\w+)"', "".join(rust(f"src/api/{f}.rs") for f in ("dataset", "training_run", "model_serving"))))
    assert kinds == set(chart.KINDS)
