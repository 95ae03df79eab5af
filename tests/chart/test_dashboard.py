"""The Grafana dashboard queries only metrics our code exports, under the labels the scrape configs attach."""
from __future__ import annotations

import json
import re

from conftest import chart, dicts, rust

DASHBOARD = json.loads((chart.CHART / "dashboards" / "fireweave-ai.json").read_text())


def exported() -> dict[str, str]:
    """Metric name -> type, read from the sources that register them."""
    names = {}
    op = rust("src/controller/operator.rs")
    for ctor, name in re.findall(r'(IntCounterVec|HistogramVec|IntGaugeVec|GaugeVec)::new\(\s*prometheus::(?:Histogram)?Opts::new\(\s*"(\w+)"', op):
        names[name] = "histogram" if ctor == "HistogramVec" else "counter" if name.endswith("_total") else "gauge"
    train = rust("src/train/metrics.rs")
    for name in re.findall(r'(?:int|float)\("(fireweave_train_\w+)"', train):
        names[name] = "gauge"
    serve = rust("src/serve/metrics.rs")
    prefix = re.search(r'Registry::new_custom\(Some\("(\w+)"', serve).group(1)
    for ctor, name in re.findall(r"(IntCounterVec|IntCounter|IntGauge|HistogramVec|Histogram)(?:::new|::with_opts)\(\s*(?:Histogram)?(?:Opts::new\()?\s*\"(\w+)\"", serve):
        names[f"{prefix}_{name}"] = "histogram" if ctor.startswith("Histogram") else "counter" if ctor.startswith("IntCounter") else "gauge"
    return names


def expressions() -> list[str]:
    return [d[key] for d in dicts(DASHBOARD) for key in ("expr", "definition") if isinstance(d.get(key), str)]


def test_sources_export_the_metrics_the_dashboard_is_built_on():
    names = exported()
    # Guards the regexes above: a refactor that hides every name would otherwise make the next test vacuous.
    assert {"fireweave_operator_reconciles_total", "fireweave_operator_objects", "fireweave_train_loss",
            "fireweave_train_eta_seconds", "fireweave_serve_requests_total", "fireweave_serve_queue_depth"} <= set(names)
    assert names["fireweave_serve_time_to_first_token_seconds"] == "histogram"
    assert {"fireweave_operator_evaluation_loss", "fireweave_operator_evaluation_passed"} <= set(names)


def test_every_queried_metric_exists():
    names = exported()
    used = set()
    for expr in expressions():
        for metric in re.findall(r"\b(fireweave_\w+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert base in names, f"{metric} in `{expr}` is exported by no source"
            if metric != base:
                assert names[base] == "histogram", f"{metric}: {base} is not a histogram"
            used.add(base)
    # Operator, training and serving each have panels.
    assert {n.split("_")[1] for n in used} == {"operator", "train", "serve"}


def test_per_resource_labels_come_from_the_pod_monitor():
    """`trainingrun` and `modelserving` exist only because the PodMonitor relabels the Pods' instance label."""
    pm = chart.render({"metrics": {"podMonitor": {"enabled": True}}})["fireweave-ai/templates/podmonitor.yaml"]
    for label in ("trainingrun", "modelserving"):
        assert f"targetLabel: {label}" in pm
        assert any(f"{label}=~" in e for e in expressions())


def test_dashboard_covers_training_and_serving_asks():
    """Loss, tokens/s and ETA per TrainingRun; its evaluation; requests, latency, tokens/s and queue depth for
    serving."""
    joined = "\n".join(expressions())
    for metric in ["fireweave_train_loss", "fireweave_train_tokens_per_second", "fireweave_train_eta_seconds",
                   "fireweave_operator_evaluation_loss", "fireweave_operator_evaluation_tool_call_accuracy",
                   "fireweave_operator_evaluation_passed",
                   "fireweave_serve_requests_total", "fireweave_serve_time_to_first_token_seconds_bucket",
                   "fireweave_serve_eval_tokens_total", "fireweave_serve_queue_depth"]:
        assert metric in joined
    assert {v["name"] for v in DASHBOARD["templating"]["list"]} == {"datasource", "namespace", "trainingrun", "modelserving"}
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
