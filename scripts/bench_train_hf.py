"""The transformers + peft side of `fireweave-ai train-bench`: the same LoRA steps on the same batches.

usage: bench_train_hf.py MODEL_DIR BATCHES_JSON R THREADS

BATCHES_JSON is a list of batches, each a list of {"ids": [...], "labels": [...]} (labels unshifted, -100 where
no loss), written by the Rust side. The first batch is an untimed warm-up. Batches are right-padded to their
longest member; like our trainer, no attention mask is passed (right padding under the causal mask cannot
reach a real token). Prints one JSON line: the wall and
process CPU seconds of each timed step, and the peak RSS.
"""

import json
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    model_dir, batches_path = sys.argv[1], sys.argv[2]
    r, threads = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(batches_path) as f:
        batches = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=r, lora_dropout=0.0, target_modules=targets))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def tensors(batch):
        width = max(len(e["ids"]) for e in batch)
        ids = torch.tensor([e["ids"] + [0] * (width - len(e["ids"])) for e in batch])
        labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in batch])
        return ids, labels

    def step(batch):
        ids, labels = tensors(batch)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])
    times, cpu = [], []
    for b in batches[1:]:
        start, start_cpu = time.perf_counter(), time.process_time()
        step(b)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step_seconds": times, "step_cpu_seconds": cpu, "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
