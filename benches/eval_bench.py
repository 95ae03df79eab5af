"""Evaluation benchmark: the evaluate step's cost against training, and its loss pass against llama.cpp used
directly on the same GGUF files and the same token sequences.

    bash scripts/provision.sh bench && source scripts/env.sh
    fireweave-ai run examples/quickstart/ --no-serve        # writes runs/<ns>/<name>/report/
    python benches/eval_bench.py examples/quickstart/.fireweave/runs/default/network-security-expert/report

Reads report/metrics.json (the trainer's own wall time), report/evaluation-timing.json (the evaluate step's
wall time, each GGUF's loss-pass seconds and the exact token ids it decoded) and decodes those sequences with
llama-cpp-python's low-level API, logits for every position (what a loss pass needs), one sequence per
llama_decode, on the same number of threads. Prints figures; asserts nothing.
"""

import argparse
import ctypes
import json
import os
import time
from pathlib import Path

import llama_cpp

p = argparse.ArgumentParser()
p.add_argument("report", type=Path)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--repeat", type=int, default=3, help="runs of the peer; the best counts")
args = p.parse_args()

metrics = json.loads((args.report / "metrics.json").read_text())
timing = json.loads((args.report / "evaluation-timing.json").read_text())
train_s = metrics["thisProcess"]["seconds"]
print(f"training {train_s:.1f} s, evaluation {timing['seconds']:.1f} s: "
      f"evaluation is {100 * timing['seconds'] / train_s:.1f} % of training (target < 10 %)")

quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
base = timing.get("base", {})
print(f"  base model: Q8_0 conversion {base.get('convertSeconds', 0):.1f} s, "
      f"{base.get('toolCases', 0)} tool-call generations {base.get('toolSeconds', 0):.1f} s")
for g in timing["ggufs"]:
    print(f"  {g['quantization']}: load {g.get('loadSeconds', 0):.1f} s, loss pass {g['lossSeconds']:.1f} s, "
          f"template check {g.get('templateSeconds', 0):.1f} s, tool-call generations {g.get('toolSeconds', 0):.1f} s")
sequences = timing["sequences"]
longest = max(len(s) for s in sequences)


def peer(path):
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    cp = llama_cpp.llama_context_default_params()
    # The evaluate step's context settings (src/eval/llama.rs): the whole sequence in one batch, ubatches of 512.
    cp.n_ctx = cp.n_batch = max(64, longest)
    cp.n_ubatch = min(cp.n_batch, 512)
    cp.n_threads = cp.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(longest, 0, 1)
    best = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        for seq in sequences:
            llama_cpp.llama_memory_clear(mem, True)
            batch.n_tokens = len(seq)
            for i, tok in enumerate(seq):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            assert llama_cpp.llama_decode(ctx, batch) == 0
        took = time.perf_counter() - t
        best = took if best is None else min(best, took)
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return best


tokens = sum(len(s) for s in sequences)
for g in timing["ggufs"]:
    ours = g["tokens"] / g["lossSeconds"]
    theirs = tokens / peer(g["file"])
    print(f"{g['quantization']:>7} loss pass over {tokens} tokens: ours {ours:,.0f} tokens/s, "
          f"llama.cpp directly {theirs:,.0f} tokens/s ({ours / theirs:.2f}×, target ≥ 0.9×)")
