"""Python peer with datatrove's MinHash deduplication (signatures → buckets → clusters → filter, word 3-grams,
14 buckets × 8 hashes), plus the same validation/quality filter as dataset_peer.py, writing JSONL.
Usage: python dataset_peer_datatrove.py CORPUS.jsonl WORKDIR [TASKS]. Prints one line of figures; the peak RSS
is the largest of the process and its worker children."""
import os, resource, sys, time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.filters import LambdaFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

sys.path.insert(0, os.path.dirname(__file__))
from dataset_peer import PLACEHOLDERS, peak_rss_mib, score  # noqa: E402


def adapter(self, data, path, id_in_file):
    return {"text": data.get("question", "") + "\n" + data.get("answer", ""), "id": f"{path}/{id_in_file}",
            "metadata": {"answer": data.get("answer", ""), "topic": data.get("topic")}}


def good(doc):
    a = doc.metadata["answer"]
    return len(a.strip()) >= 40 and not any(p in a.lower() for p in PLACEHOLDERS) and score(a) >= 50


def main():
    corpus, work = sys.argv[1], sys.argv[2]
    tasks = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    src = os.path.dirname(os.path.abspath(corpus))
    name = os.path.basename(corpus)
    cfg = MinhashConfig(n_grams=3, num_buckets=14, hashes_per_bucket=8)
    read = lambda: JsonlReader(src, glob_pattern=name, adapter=adapter)  # noqa: E731
    t = time.time()
    LocalPipelineExecutor(pipeline=[read(), LambdaFilter(good), MinhashDedupSignature(f"{work}/sigs", config=cfg)],
                          tasks=1, workers=1, logging_dir=f"{work}/logs/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                          tasks=cfg.num_buckets, workers=tasks, logging_dir=f"{work}/logs/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)],
                          tasks=1, workers=1, logging_dir=f"{work}/logs/3").run()
    LocalPipelineExecutor(pipeline=[read(), LambdaFilter(good), MinhashDedupFilter(f"{work}/remove"),
                                    JsonlWriter(f"{work}/out")],
                          tasks=1, workers=1, logging_dir=f"{work}/logs/4").run()
    secs = time.time() - t
    n = sum(1 for _ in open(corpus))
    rss = max(peak_rss_mib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(f"python peer (datatrove MinHash dedup): {n} records in {secs:.2f}s = {n / secs:.0f} records/s; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
