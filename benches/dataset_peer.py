"""The Python peer for benches/dataset_pipeline.rs: the same work (parse, validate, score, exact dedup, MinHash
LSH near dedup at 0.8 with 128 permutations over word 3-shingles, hash split, ShareGPT write) with datasketch.
Usage: python dataset_peer.py CORPUS.jsonl OUTDIR. Prints one line of figures."""
import hashlib, json, os, re, sys, time

from datasketch import MinHash, MinHashLSH

PLACEHOLDERS = ("[insert", "lorem ipsum", "as an ai language model", "todo")
TERMS = {"firewall", "rule", "nat", "zone", "policy", "subnet", "route", "tcp", "udp", "vpn", "ipsec", "bgp",
         "ospf", "acl", "dns", "tls", "certificate", "segment", "vlan", "gateway", "session", "log"}
WORD = re.compile(r"\w+")


def score(answer):
    import math
    n = len(answer)
    length = 0 if n < 40 else min(1.0, (math.log(n) - math.log(40)) / (math.log(1500) - math.log(40))) * 30
    code = 10 if answer.count("```") >= 2 else 0
    cli = min(20, 2.5 * sum(1 for l in answer.splitlines() if l.startswith(("set ", "show ", "$ "))))
    depth = min(25, 2.5 * len({w.lower() for w in WORD.findall(answer)} & TERMS))
    fmt = 3 if sum(1 for l in answer.splitlines() if l[:2] in ("1.", "2.", "3.")) >= 2 else 0
    return length + code + cli + depth + fmt



def peak_rss_mib():
    """VmHWM of this process. Not getrusage(): on Linux ru_maxrss survives exec, so a peer started by the
    benchmark would report the Rust benchmark's own peak instead of its own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

def main():
    corpus, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    t = time.time()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    seen = set()
    kept, rejected, dups, n = [], 0, 0, 0
    with open(corpus) as f:
        for line in f:
            n += 1
            try:
                r = json.loads(line)
                q, a = r["question"], r["answer"]
            except (ValueError, KeyError):
                rejected += 1
                continue
            low = a.lower()
            if len(a.strip()) < 40 or any(p in low for p in PLACEHOLDERS) or score(a) < 50:
                rejected += 1
                continue
            text = (q + "\n" + a).lower()
            norm = " ".join(text.split())
            h = hashlib.md5(norm.encode()).hexdigest()
            if h in seen:
                dups += 1
                continue
            seen.add(h)
            words = WORD.findall(norm)
            m = MinHash(num_perm=128)
            m.update_batch([" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))])
            if lsh.query(m):
                dups += 1
                continue
            lsh.insert(str(n), m)
            kept.append(r)
    with open(os.path.join(out, "train.jsonl"), "w") as tr, open(os.path.join(out, "eval.jsonl"), "w") as ev:
        for r in kept:
            line = json.dumps({"conversations": [{"from": "human", "value": r["question"]},
                                                 {"from": "gpt", "value": r["answer"]}], "topic": r.get("topic")})
            h = int(hashlib.md5((r["question"] + r["answer"]).encode()).hexdigest()[:8], 16)
            (ev if h % 10 == 0 else tr).write(line + "\n")
    secs = time.time() - t
    rss = peak_rss_mib()
    print(f"python peer (datasketch MinHashLSH): {n} records in {secs:.2f}s = {n / secs:.0f} records/s; "
          f"peak RSS {rss:.0f} MiB; kept {len(kept)} rejected {rejected} duplicates {dups}")


if __name__ == "__main__":
    main()
