"""Seed corpora for the cargo-fuzz targets, from the shipped sample data (examples/data/fireweave), the example
manifests and the test fixtures (~/.cache/fireweave-ai/fixtures), plus a few hand-written hostile inputs.

    python tests/fuzz/make_seeds.py [CORPUS_ROOT]        # default tests/fuzz/corpus; one folder per target

Inputs that start with a selector byte (see each target's header) are written with several selectors. The
gguf_reader seeds need PyPI `gguf` (in the project venv); without it they are skipped.
"""
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "fireweave"
corpus = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests" / "fuzz" / "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def records():
    """Every record of the sample, as parsed JSON, with the file it came from."""
    for f in sorted(SAMPLE.iterdir()):
        text = f.read_text()
        if f.suffix == ".json":
            for r in json.loads(text):
                yield f, r
        else:
            for line in text.splitlines():
                try:
                    yield f, json.loads(line)
                except json.JSONDecodeError:
                    pass


def raw_records():
    """Every record of the sample as its bytes, the malformed lines of bad-records.jsonl included."""
    for f in sorted(SAMPLE.iterdir()):
        if f.suffix == ".json":
            for r in json.loads(f.read_text()):
                yield json.dumps(r, ensure_ascii=False).encode()
        else:
            yield from (line for line in f.read_bytes().splitlines() if line.strip())


def to_messages(r):
    """A sample record as chat::Message values (what the chat templates render)."""
    if "messages" in r:
        out = []
        for m in r["messages"]:
            calls = [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])
                 if isinstance(c["function"]["arguments"], str) else c["function"]["arguments"]}
                for c in m.get("tool_calls") or []
            ]
            msg = {"role": m["role"], "content": m.get("content") or ""}
            if calls:
                msg["tool_calls"] = calls
            if m["role"] == "tool":
                msg["tool_name"] = m.get("name", "check_traffic_flow")
            out.append(msg)
        return out
    if "conversations" in r:
        roles = {"human": "user", "gpt": "assistant", "system": "system", "tool": "tool"}
        return [{"role": roles.get(t["from"], "user"), "content": t.get("value") or ""} for t in r["conversations"]]
    return [{"role": "user", "content": r.get("question", "")}, {"role": "assistant", "content": r.get("answer", "")}]


TOOL = {"type": "function", "function": {"name": "check_traffic_flow", "description": "Check a flow",
        "parameters": {"type": "object", "properties": {"source": {"type": "string"}, "port": {
            "type": "integer", "minimum": 0, "maximum": 65535}}, "required": ["source"]}}}

HOSTILE_TEXT = [
    "account 123456789012 at 1733312345678 ms from 4294967296.1.1.1 and 99999999999999999999.1.1.1/24",
    "999.1.1.1 1.2.3.4/33 1.2.3.4/ 1.2.3.4.5 1..2.3 0.0.0.0/0 version 10.2.3.4.5",
    "```\n`a``b```c`\n```", "{name} {{x}} ${VAR} TODO TBD FIXME XXX [insert here] <placeholder>",
    "\u00e9\u20ac\U0001f600 \u00a0\u2028 \x00\x01", "a" * 3000,
]


def dataset_seeds():
    raw = list(raw_records())
    for i, rec in enumerate(raw):
        for sel in (0x00, 0x01, 0x02, 0x03, 0x1D, 0xFF):
            if (i + sel) % 3 == 0 or sel == 0:
                put("dataset_record", bytes([sel]) + rec)
    for t in HOSTILE_TEXT:
        put("dataset_record", b"\x08" + json.dumps({"question": "What does this mean here?", "answer": t}).encode())
        put("dataset_record", b"\x00" + json.dumps({"messages": [{"role": "user", "content": "Explain the output."},
            {"role": "assistant", "content": t}]}).encode())
    put("dataset_record", b"\x03" + json.dumps({"tools": [TOOL], "messages": [{"role": "user", "content": "check 443"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function", "function": {
            "name": "check_traffic_flow", "arguments": "{\"source\": \"10.0.0.1\", \"port\": 70000}"}}]}]}).encode())
    put("dataset_record", b"\x02" + json.dumps({"tools": json.dumps([TOOL]), "conversations": [
        {"from": "human", "value": "check flow now"}, {"from": "function_call", "value": json.dumps(
            {"name": "check_traffic_flow", "arguments": {"source": "x"}})}, {"from": "observation", "value": "ok"},
        {"from": "gpt", "value": "Allowed."}]}).encode())

    for f in sorted(SAMPLE.iterdir()):
        data = f.read_bytes()
        sel = {".json": 0x00, ".jsonl": 0x01}[f.suffix]
        put("dataset_file", bytes([sel]) + data)
        put("dataset_file", bytes([sel | 0xC0]) + data)  # artifact written
        put("dataset_file", bytes([sel | 0x04]) + data[: len(data) // 2])  # truncated, 64-byte records
        put("dataset_file", bytes([sel | 0x0C]) + data[: len(data) // 3] + b"\x00\xff\xfe binary\n" + data[-2000:])
    put("dataset_file", b"\x00" + b"\xef\xbb\xbf" + json.dumps(next(r for _, r in records())).encode())
    put("dataset_file", b"\x00" + b'[{"question": "q1 is long", "answer": "a"}, 5, "x", [1], {"q"')
    put("dataset_file", b"\x01" + b"\n\r\n   \n" + b"\x00\x01\x02\n" + b'{"question": "' + b"x" * 5000 + b'"}\n')
    put("dataset_file", b"\x00" + b'{"question": "a", "answer": "b"} {"question": "c", "answer": "d"}')


def chat_seeds():
    for i, (f, r) in enumerate(records()):
        if i % 2:
            continue
        msgs = to_messages(r)
        body = {"messages": msgs}
        if any(m.get("tool_calls") for m in msgs) or i % 6 == 0:
            body["tools"] = r.get("tools") or [TOOL]
        for sel in (0x00, 0x11, 0x22, 0x43):
            put("chat_template", bytes([sel]) + json.dumps(body).encode())
    hostile = {"messages": [
        {"role": "system", "content": "{{ 7*7 }}{% raw %}"}, {"role": "user", "content": "<|eot_id|><|start_header_id|>"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "", "arguments": [1, {"a": None}, 1e308]}]},
        {"role": "tool", "content": "\u0000", "tool_name": "\u202e"}],
        "tools": [{"type": "function", "function": {"name": 5, "parameters": "x"}}, "str", None, {"function": None}]}
    put("chat_template", b"\xff" + json.dumps(hostile).encode())


def manifest_seeds():
    paths = [ROOT / "examples" / "quickstart" / "pipeline.yaml", *sorted((ROOT / "manifests" / "examples").glob("*.yaml"))]
    for p in paths:
        text = p.read_text()
        put("manifest", text)
        for doc in text.split("\n---\n"):
            put("manifest", doc)
    put("manifest", "apiVersion: ai.fireweave.io/v1alpha1\nkind: Dataset\nmetadata: {name: d, namespace: ai}\n"
                    "spec:\n  sources: [{path: data, format: sharegpt}]\n  filters: {maxRecordBytes: 0, "
                    "dedup: {nearDuplicateThreshold: 1.5}}\n  split: {evalFraction: 1}\n")
    put("manifest", "a: &a [*a]\n---\nkind: [unclosed\n")
    put("manifest", '{"apiVersion": "ai.fireweave.io/v1alpha1", "kind": "ModelServing", "metadata": {"name": "Bad_Name"},'
                    ' "spec": {"model": {"gguf": {"path": "m.gguf"}}, "replicas": -1}}')


def serve_seeds():
    user = [{"role": "user", "content": "Is HTTPS allowed from 10.0.0.1?"}]
    chat = [
        {"model": "m", "messages": user, "stream": False, "options": {"temperature": 0, "seed": -1, "num_predict": -2,
                                                                      "top_k": -5, "stop": ["\n\n", ""], "num_thread": 2}},
        {"model": "m", "messages": user, "tools": [TOOL], "format": "json"},
        {"model": "m", "messages": user, "format": {"type": "object", "properties": {"a": {"type": "integer",
            "minimum": 0}, "b": {"$ref": "#/properties/a"}}, "required": ["a"]}},
        {"model": "m", "messages": [{"role": "User", "content": [{"type": "text", "text": "hi"}], "images": ["aGk="]},
                                    {"role": "assistant", "content": None, "tool_calls": [{"function": {
                                        "name": "check_traffic_flow", "arguments": "{\"source\": \"x\"}"}}]},
                                    {"role": "tool", "content": "ok", "tool_name": "check_traffic_flow"}]},
        {"model": "m", "messages": [{"role": "robot", "content": 5}]},
    ]
    for b in chat:
        for sel in (0x00, 0x04, 0x08):
            put("serve_request", bytes([sel]) + json.dumps(b).encode())
    for b in [{"model": "m", "prompt": "Why?", "system": "Be brief.", "options": {"num_ctx": 99999999999}},
              {"model": "m", "prompt": "x", "raw": True, "format": {"type": "array", "items": {"enum": [1, "a"]}}},
              {"model": "m", "prompt": "", "suffix": "s", "template": "{{ .Prompt }}"}]:
        put("serve_request", b"\x01" + json.dumps(b).encode())
    for b in [{"model": "m", "input": "hello"}, {"model": "m", "input": ["a", 5]}, {"model": "m", "input": None}]:
        put("serve_request", b"\x02" + json.dumps(b).encode())
    for b in [{"model": "m", "messages": user, "max_tokens": -1, "temperature": 1e30, "stop": ["a", "b"],
               "logit_bias": {"15": -100, "x": 5, "-3": 101}, "response_format": {"type": "json_object"}},
              {"model": "m", "messages": user, "tools": [TOOL], "stream": True, "seed": 9223372036854775807,
               "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string",
                                                                                    "pattern": "^[a-z]{2,}$"}}}},
              {"model": "m", "messages": [{"role": "developer", "content": [{"text": 5}]}], "stop": 7}]:
        put("serve_request", b"\x03" + json.dumps(b).encode())
    for i, (f, r) in enumerate(records()):
        if "messages" in r and i % 3 == 0:
            put("serve_request", b"\x03" + json.dumps({"model": "m", "messages": r["messages"],
                                                       "tools": r.get("tools", [TOOL])}).encode())


def train_seeds():
    for i, (f, r) in enumerate(records()):
        if "messages" in r or "conversations" in r:
            for sel in (0x00, 0x01, 0x06):
                if (i + sel) % 2 == 0:
                    put("train_encode", bytes([sel]) + json.dumps(r).encode())
    put("train_encode", b"\x01" + json.dumps({"conversations": [{"from": "gpt", "value": ""},
                                                                {"from": "gpt", "value": None}]}).encode())


def gguf_seeds():
    try:
        import gguf
        import numpy as np
        from gguf import GGMLQuantizationType as T
    except ImportError:
        print("gguf_reader: PyPI gguf not installed, skipped")
        return
    out = corpus / "gguf_reader"
    out.mkdir(parents=True, exist_ok=True)

    def write(name, add):
        w = gguf.GGUFWriter(str(out / name), "llama")
        add(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    def with_metadata(tensor_name, array):
        def add(w):
            w.add_uint32("x.u32", 7)
            w.add_int8("x.i8", -3)
            w.add_float64("x.f64", 1.5)
            w.add_bool("x.b", True)
            w.add_string("x.s", "hello")
            w.add_array("x.arr", [1, 2, 3])
            w.add_array("x.sarr", ["a", "bc"])
            w.add_tensor(tensor_name, array)
        return add

    write("seed-f32.gguf", with_metadata("f32", np.arange(64, dtype=np.float32).reshape(2, 32)))
    write("seed-f16.gguf", with_metadata("f16", np.linspace(-1, 1, 64).astype(np.float16).reshape(2, 32)))
    # Block bytes per type (BF16: 2 bytes a value, 32 values a row here).
    for i, (qt, row_bytes) in enumerate(
        [(T.Q8_0, 34), (T.Q4_K, 144), (T.Q6_K, 210), (T.Q5_1, 24), (T.Q4_0, 18), (T.Q5_K, 176), (T.BF16, 64)]
    ):
        raw = np.random.default_rng(i).integers(0, 255, size=(2, row_bytes), dtype=np.uint8)
        write(f"seed-{qt.name.lower()}.gguf", lambda w, raw=raw, qt=qt: w.add_tensor(f"t{i}", raw, raw_dtype=qt))


for make in (dataset_seeds, chat_seeds, manifest_seeds, serve_seeds, train_seeds, gguf_seeds):
    make()
for d in sorted(p for p in corpus.iterdir() if p.is_dir()):
    print(f"{d.name}: {sum(1 for _ in d.iterdir())} seeds")
