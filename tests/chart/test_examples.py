"""manifests/examples/ and examples/: every custom resource validates against its CRD's openAPIV3Schema (as the API
server's strict field validation would: unknown fields are errors), and the pipeline carries the seed project's
settings. (tests/api_schema.rs also evaluates the CRDs' CEL rules on the same files.)"""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, dicts

CRDS = {}
for path in sorted((ROOT / "crds").glob("*.yaml")):
    crd = yaml.safe_load(path.read_text())
    CRDS[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd


def strict(schema: dict) -> dict:
    """The OpenAPI schema as JSON Schema with unknown fields refused (kubectl's default strict field validation),
    except where the CRD keeps unknown fields on purpose."""
    schema = copy.deepcopy(schema)
    for node in dicts(schema):
        if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
    return schema


def schema_for(obj: dict) -> dict:
    group, version = obj["apiVersion"].split("/")
    crd = CRDS[(group, obj["kind"])]
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    root = strict(served["schema"]["openAPIV3Schema"])
    # The API server checks apiVersion, kind and metadata itself; the CRD schema need not list them.
    root["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    return root


def custom_resources() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")) + sorted((ROOT / "examples").glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.relative_to(ROOT)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


RESOURCES = custom_resources()


@pytest.mark.parametrize("name, obj", RESOURCES, ids=[n for n, _ in RESOURCES])
def test_example_validates_against_its_crd(name, obj):
    jsonschema.validate(obj, schema_for(obj), cls=jsonschema.Draft7Validator)


def test_a_typo_is_caught():
    _, obj = next(r for r in RESOURCES if r[1]["kind"] == "TrainingRun")
    bad = copy.deepcopy(obj)
    bad["spec"]["hyperparameters"]["learningrate"] = 0.1
    with pytest.raises(jsonschema.ValidationError, match="learningrate"):
        jsonschema.validate(bad, schema_for(bad), cls=jsonschema.Draft7Validator)


def pipeline() -> dict[str, dict]:
    docs = yaml.safe_load_all((ROOT / "manifests/examples/fireweave-pipeline.yaml").read_text())
    return {d["kind"]: d for d in docs}


# The seed project (Unsloth notebook, Modelfile) these examples reproduce.
SEED_SYSTEM = (
    "You are a Network Security Expert with deep expertise in:\n"
    "- Firewall & Network Devices: Cisco, Palo Alto, Fortinet\n"
    "- Cloud Security: AWS, Azure, GCP\n"
    "- Threat Detection: IDS/IPS, SIEM, Incident Response\n"
    "- FireWeave platform features and API\n\n"
    "Provide accurate, detailed technical guidance with specific commands and configurations."
)


def test_the_pipeline_is_the_seed_project():
    p = pipeline()
    run = p["TrainingRun"]["spec"]
    assert run["baseModel"]["huggingFace"]["repo"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert run["baseQuantization"] == "nf4"  # load_in_4bit = True
    assert run["lora"] == {"r": 16, "alpha": 16, "dropout": 0,
                           "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    h = run["hyperparameters"]
    assert (h["epochs"], h["batchSize"], h["gradientAccumulation"]) == (3, 2, 4)
    assert (h["learningRate"], h["weightDecay"], h["warmupSteps"], h["maxSeqLength"]) == (2e-4, 0.01, 10, 2048)
    assert run["export"]["gguf"] == ["Q4_K_M", "Q5_K_M", "Q8_0"]
    assert run["datasetRef"]["name"] == p["Dataset"]["metadata"]["name"]
    assert p["Dataset"]["spec"]["filters"]["minQualityScore"] == 50

    serving = p["ModelServing"]
    assert serving["metadata"]["name"] == serving["spec"]["modelName"] == "network-security-expert"
    assert serving["spec"]["model"]["trainingRunRef"] == {"name": "network-security-expert", "quantization": "Q4_K_M"}
    mf = serving["spec"]["modelfile"]
    assert mf["system"] == SEED_SYSTEM
    params = mf["parameters"]
    assert (params["temperature"], params["top_p"], params["top_k"], params["repeat_penalty"]) == (0.7, 0.9, 40, 1.1)
    assert params["stop"] == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token"]


def test_the_sample_data_configmap_fits_in_one_configmap():
    """The examples read examples/data/fireweave through one ConfigMap, which the API server caps at 1 MiB."""
    files = [f for f in (ROOT / "examples/data/fireweave").iterdir() if f.is_file()]
    assert files and sum(f.stat().st_size for f in files) < 1024 * 1024 * 0.9


def test_the_cpu_variant_needs_no_gpu():
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "manifests/examples/cpu-small.yaml").read_text())}
    assert docs["TrainingRun"]["spec"]["resources"]["gpus"] == 0
    assert docs["ModelServing"]["spec"].get("resources", {}).get("gpus", 0) == 0
    assert docs["ModelServing"]["spec"]["engine"] == "builtin"
    wanted = docs["ModelServing"]["spec"]["model"]["trainingRunRef"]["quantization"]
    assert wanted in docs["TrainingRun"]["spec"]["export"]["gguf"]
