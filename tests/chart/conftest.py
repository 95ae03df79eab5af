"""Shared helpers of the chart, manifest, image and Argo CD tests (run by scripts/test.sh with pytest)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import chart  # noqa: E402  (scripts/chart.py: the generator and the Helm render)


def objects(rendered: dict[str, str]) -> list[dict]:
    """Every rendered Kubernetes object, parsed."""
    return [yaml.safe_load(doc) for _, doc in chart.documents(rendered)]


def find(objs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objs
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(objs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(found)}"
    return found[0]


def dicts(node):
    """Every mapping in nested JSON-like data, outermost first (each may be changed before its children are read)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from dicts(value)


def rust(path: str) -> str:
    return (ROOT / path).read_text()


def rust_const(path: str, name: str) -> str:
    """The value of `pub const NAME: &str = "...";` in a Rust source file."""
    m = re.search(rf'const {name}: &str = "([^"]*)";', rust(path))
    assert m, f"{path} no longer defines {name}"
    return m.group(1)


@pytest.fixture(scope="session")
def default_render() -> dict[str, str]:
    return chart.render()
