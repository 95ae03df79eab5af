"""Contract suite for `fireweave-ai serve`, driven by the official `ollama` Python client (plain HTTP for the
error cases and the OpenAI endpoints). Started by tests/serve_contract.rs, which runs two servers:
--host (parallel slots, model "smol" with a tools-capable template override from a YAML config) and
--busy-host (one slot, a queue of one) for the 503 and disconnect cases."""

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--busy-host", required=True)
p.add_argument("--model", default="smol")
p.add_argument("--load-requests", type=int, default=200)
p.add_argument("--load-clients", type=int, default=8)
args = p.parse_args()

M = args.model
client = ollama.Client(host=args.host)
http = httpx.Client(base_url=args.host, timeout=120)
GREEDY = {"temperature": 0, "num_predict": 24, "seed": 1}
USER = [{"role": "user", "content": "What is a firewall? Answer in one sentence."}]
# SmolLM2's <|endoftext|>, <|im_start|> and <|im_end|>: banning them keeps a greedy answer going to max_tokens.
NO_EOG = {"0": -100, "1": -100, "2": -100}
failures = []


def case(fn):
    name = fn.__name__
    t = time.time()
    try:
        fn()
        print(f"ok   {name} ({time.time() - t:.1f}s)", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failing case, then fail the run
        failures.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    return fn


@case
def root_and_version():
    r = http.get("/")
    assert r.status_code == 200 and r.text == "Ollama is running", r.text
    assert http.head("/").status_code == 200
    assert "version" in http.get("/api/version").json()
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200


@case
def tags_show_ps():
    models = client.list().models
    smol = [m for m in models if m.model.startswith(M)]
    assert smol, models
    assert smol[0].details.format == "gguf"
    assert smol[0].details.quantization_level == "Q4_1", smol[0].details
    assert len(smol[0].digest) == 64 and smol[0].size > 0
    show = client.show(M)
    assert "tools" in show.capabilities and "completion" in show.capabilities, show.capabilities
    assert "<|im_start|>" in show.template
    assert show.modelinfo["general.architecture"] == "llama"
    assert "temperature" in show.parameters
    ps = client.ps().models
    assert any(m.model.startswith(M) for m in ps), ps
    assert ps[0].context_length == 1024, ps[0]  # the config's num_ctx parameter, no --num-ctx flag


@case
def chat_non_streaming_and_streaming_agree():
    r = client.chat(model=M, messages=USER, options=GREEDY, stream=False)
    assert r.done and r.message.role == "assistant" and r.message.content, r
    assert r.done_reason in ("stop", "length")
    assert 0 < r.eval_count <= 24 and r.prompt_eval_count > 0 and r.total_duration > 0
    again = client.chat(model=M, messages=USER, options=GREEDY, stream=False)
    assert again.message.content == r.message.content, "greedy output must be deterministic"
    chunks = list(client.chat(model=M, messages=USER, options=GREEDY, stream=True))
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert "".join(c.message.content for c in chunks) == r.message.content
    assert chunks[-1].eval_count == r.eval_count


@case
def generate_non_streaming_and_streaming():
    r = client.generate(model=M, prompt="The capital of France is", options=GREEDY)
    assert r.done and r.response and r.context, r
    chunks = list(client.generate(model=M, prompt="The capital of France is", options=GREEDY, stream=True))
    assert "".join(c.response for c in chunks) == r.response
    raw = client.generate(model=M, prompt="1, 2, 3, 4,", raw=True, options={"temperature": 0, "num_predict": 6})
    assert raw.response.strip().startswith("5"), raw.response


@case
def num_predict_and_seeded_sampling():
    r = client.chat(model=M, messages=USER, options={"num_predict": 5, "temperature": 0})
    assert r.done_reason == "length" and r.eval_count == 5, r
    hot = {"temperature": 1.5, "top_k": 100, "top_p": 1.0, "min_p": 0.0, "seed": 42, "num_predict": 20,
           "repeat_penalty": 1.1, "presence_penalty": 0.2, "frequency_penalty": 0.2}
    a = client.chat(model=M, messages=USER, options=hot).message.content
    b = client.chat(model=M, messages=USER, options=hot).message.content
    assert a == b, "same seed, same output"
    c = client.chat(model=M, messages=USER, options={**hot, "seed": 43}).message.content
    assert c != a, "another seed should change a hot sample"


@case
def stop_strings():
    full = client.chat(model=M, messages=USER, options=GREEDY).message.content
    words = full.split()
    assert len(words) > 3, full
    stop = words[2]
    cut = client.chat(model=M, messages=USER, options={**GREEDY, "stop": [stop]})
    assert cut.message.content == full[: full.index(stop)], (cut.message.content, full, stop)
    assert cut.done_reason == "stop"
    streamed = "".join(c.message.content for c in client.chat(
        model=M, messages=USER, options={**GREEDY, "stop": [stop]}, stream=True))
    assert streamed == cut.message.content


@case
def json_format_and_schema():
    r = client.chat(model=M, messages=[{"role": "user", "content": "Describe Paris as JSON."}],
                    format="json", options={"temperature": 0, "num_predict": 80})
    assert isinstance(json.loads(r.message.content), dict), r.message.content
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"]}
    r = client.chat(model=M, messages=[{"role": "user", "content": "Describe Paris as JSON."}],
                    format=schema, options={"temperature": 0, "num_predict": 80})
    v = json.loads(r.message.content)
    assert isinstance(v["city"], str) and isinstance(v["population"], int), v


TOOL = {"type": "function", "function": {
    "name": "check_traffic_flow",
    "description": "Check whether traffic is allowed between two hosts on a port",
    "parameters": {"type": "object", "properties": {
        "source_ip": {"type": "string"}, "destination_ip": {"type": "string"}, "port": {"type": "integer"}},
        "required": ["source_ip", "destination_ip", "port"]}}}
CALL_SCHEMA = {"type": "object", "properties": {
    "name": {"const": "check_traffic_flow"}, "parameters": TOOL["function"]["parameters"]},
    "required": ["name", "parameters"]}
ASK = [{"role": "user", "content": "Is traffic from 10.0.0.5 to 10.0.1.9 on port 443 allowed?"}]


@case
def tool_call_round_trip():
    # A 135M model will not call tools reliably on its own; the grammar makes it emit a Llama 3.1 style call,
    # which the server must parse into tool_calls.
    r = client.chat(model=M, messages=ASK, tools=[TOOL], format=CALL_SCHEMA,
                    options={"temperature": 0, "num_predict": 120})
    calls = r.message.tool_calls
    assert calls and calls[0].function.name == "check_traffic_flow", r.message
    assert isinstance(calls[0].function.arguments, dict) and "port" in calls[0].function.arguments
    assert r.message.content == ""
    streamed = [c for c in client.chat(model=M, messages=ASK, tools=[TOOL], format=CALL_SCHEMA, stream=True,
                                       options={"temperature": 0, "num_predict": 120}) if c.message.tool_calls]
    assert streamed and streamed[0].message.tool_calls[0].function.arguments == calls[0].function.arguments
    follow = ASK + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "check_traffic_flow", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_name": "check_traffic_flow", "content": '{"allowed": false, "rule": "deny-443"}'}]
    answer = client.chat(model=M, messages=follow, tools=[TOOL], options={"temperature": 0, "num_predict": 30})
    assert answer.done and answer.message.content, answer


@case
def embed():
    r = client.embed(model=M, input=["firewall rule", "network policy"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == len(r.embeddings[1]) > 0
    norm = sum(x * x for x in r.embeddings[0]) ** 0.5
    assert abs(norm - 1) < 1e-3, norm


@case
def openai_endpoints():
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and any(m["id"] == M for m in models["data"])
    body = {"model": M, "messages": USER, "temperature": 0, "max_tokens": 24}
    r = http.post("/v1/chat/completions", json=body).json()
    assert r["object"] == "chat.completion" and r["choices"][0]["message"]["content"], r
    text = ""
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for ln in lines[:-1]:
        text += json.loads(ln[6:])["choices"][0]["delta"].get("content", "")
    assert text == r["choices"][0]["message"]["content"]
    call = http.post("/v1/chat/completions", json={
        "model": M, "messages": ASK, "tools": [TOOL], "temperature": 0, "max_tokens": 120,
        "response_format": {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}}}).json()
    tc = call["choices"][0]["message"]["tool_calls"][0]
    assert call["choices"][0]["finish_reason"] == "tool_calls"
    assert isinstance(tc["function"]["arguments"], str) and "port" in json.loads(tc["function"]["arguments"])
    # Banning the end-of-generation tokens forces a "length" finish at exactly max_tokens.
    banned = http.post("/v1/chat/completions", json={**body, "max_tokens": 40, "logit_bias": NO_EOG}).json()
    assert banned["choices"][0]["finish_reason"] == "length", banned
    assert banned["usage"]["completion_tokens"] == 40, banned
    for bias, why in [({"x": -100}, "not a token id"), ({"99999999": -100}, "outside the vocabulary"),
                      ({"5": 101}, "outside [-100, 100]")]:
        r = http.post("/v1/chat/completions", json={**body, "logit_bias": bias})
        assert r.status_code == 400 and why in r.json()["error"]["message"], r.text
    bad = http.post("/v1/chat/completions", json={"model": "nope", "messages": USER})
    assert bad.status_code == 404 and "message" in bad.json()["error"]


@case
def errors():
    try:
        client.chat(model="no-such-model", messages=USER)
        raise AssertionError("expected 404")
    except ollama.ResponseError as e:
        assert e.status_code == 404 and e.error == 'model "no-such-model" not found, try pulling it first', e
    r = http.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json(), r.text
    r = http.post("/api/chat", json={"messages": USER})
    assert r.status_code == 400 and r.json() == {"error": "model is required"}
    r = http.post("/api/chat", json={"model": M, "messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400
    r = http.post("/api/generate", json={"model": M, "prompt": "x", "raw": True, "system": "s"})
    assert r.status_code == 400
    r = http.post("/api/show", json={"model": "ghost"})
    assert r.status_code == 404 and r.json()["error"].startswith('model "ghost" not found')


def busy_metric(name):
    for line in httpx.get(args.busy_host + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@case
def queue_full_and_disconnect_frees_slot():
    busy = httpx.Client(base_url=args.busy_host, timeout=120)
    # The holder must still hold the slot when the third request arrives, on any CPU: with its end-of-generation
    # tokens banned it runs the full 1,500 tokens (greedy text alone can end early where the SIMD path differs).
    long = {"model": M, "messages": [{"role": "user", "content": "Write a long essay about firewalls."}],
            "temperature": 0, "max_tokens": 1500, "logit_bias": NO_EOG, "stream": True}
    cancelled_before = busy_metric("fireweave_serve_cancelled_total")
    # One request holds the only slot (it has streamed a line, so it was admitted) ...
    with busy.stream("POST", "/v1/chat/completions", json=long) as holder:
        # Keep the line iterator alive: a dropped httpx iterator closes the stream, and the server (rightly)
        # frees the slot of a client that left.
        lines = holder.iter_lines()
        next(lines)
        # ... one waits in the queue of one ...
        waiter_result = {}

        def wait():
            waiter_result["r"] = httpx.post(args.busy_host + "/api/chat", timeout=120, json={
                "model": M, "messages": USER, "stream": False, "options": {"temperature": 0, "num_predict": 4}})

        waiter = threading.Thread(target=wait)
        waiter.start()
        deadline = time.time() + 10
        while busy_metric("fireweave_serve_queue_depth") < 1 and time.time() < deadline:
            time.sleep(0.05)
        # Both must still hold: the holder decoding and the waiter queued (else the next request's 200 below would
        # say nothing about the queue limit).
        assert busy_metric("fireweave_serve_active_slots") == 1 and busy_metric("fireweave_serve_queue_depth") == 1
        # ... so the next one is refused.
        r = busy.post("/api/chat", json={"model": M, "messages": USER, "stream": False})
        assert r.status_code == 503, r.status_code
        assert r.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    # Leaving the stream closed the connection: the slot must be freed long before 400 tokens are done.
    t = time.time()
    waiter.join(timeout=60)
    assert waiter_result["r"].status_code == 200, waiter_result
    assert busy_metric("fireweave_serve_cancelled_total") >= cancelled_before + 1
    print(f"     queued request finished {time.time() - t:.2f}s after the disconnect")


def gauge(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@case
def metrics_endpoint():
    text = http.get("/metrics").text
    for name in ["fireweave_serve_requests_total", "fireweave_serve_queue_depth", "fireweave_serve_active_slots",
                 "fireweave_serve_time_to_first_token_seconds_bucket", "fireweave_serve_tokens_per_second_bucket",
                 "fireweave_serve_prompt_tokens_total", "fireweave_serve_eval_tokens_total"]:
        assert name in text, name
    assert 'endpoint="/api/chat",status="200"' in text
    assert 'endpoint="/api/chat",status="404"' in text
    # Every earlier case has ended: an idle server reports no busy slot (it once kept the last request's slot
    # counted while it waited for the next one). A disconnected stream may take a moment to be noticed.
    client.generate(model=M, prompt="Say OK.", options={"temperature": 0, "num_predict": 2})
    deadline = time.time() + 10
    while (active := gauge(http.get("/metrics").text, "fireweave_serve_active_slots")) != 0 and time.time() < deadline:
        time.sleep(0.1)
    assert active == 0, f"fireweave_serve_active_slots is {active} on an idle server"



@case
def load_200_requests_8_clients():
    prompts = [f"Name one use of port {1000 + i}." for i in range(args.load_requests)]

    def one(prompt):
        t = time.time()
        r = ollama.Client(host=args.host).chat(model=M, messages=[{"role": "user", "content": prompt}],
                                               options={"temperature": 0, "num_predict": 8})
        assert r.done and r.eval_count > 0, r
        return time.time() - t, r.eval_count

    t0 = time.time()
    with ThreadPoolExecutor(args.load_clients) as pool:
        results = list(pool.map(one, prompts))
    wall = time.time() - t0
    assert len(results) == args.load_requests
    lat = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    print(f"     load: {len(results)} requests, {args.load_clients} clients, {wall:.1f}s, "
          f"{len(results) / wall:.1f} req/s, {tokens / wall:.1f} generated tok/s, "
          f"latency p50 {statistics.median(lat) * 1000:.0f} ms p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.0f} ms")


if failures:
    print(f"{len(failures)} case(s) failed: {', '.join(failures)}")
    sys.exit(1)
print("all contract cases passed")
