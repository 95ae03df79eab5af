"""Read a GGUF file with PyPI `gguf` (an independent reader) and print what it sees as JSON:
every key with its value, every tensor with type, shape and checksums of its dequantized values."""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

r = GGUFReader(sys.argv[1])
kv = {}
for name, field in r.fields.items():
    if name.startswith("GGUF."):
        continue
    kv[name] = field.contents()
tensors = []
for t in r.tensors:
    values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
    tensors.append({
        "name": t.name,
        "type": t.tensor_type.name,
        "dims": [int(d) for d in t.shape],
        "sum": float(values.sum()),
        "abs_sum": float(np.abs(values).sum()),
        "head": [float(v) for v in values[:16]],
    })
print(json.dumps({"kv": kv, "tensors": tensors}))
