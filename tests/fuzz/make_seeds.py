"""Seed corpus for the gguf_reader fuzz target: small GGUF files, written by PyPI `gguf`, with metadata of
several value types and one tensor of each of nine tensor types (quantized blocks hold random bytes).

    python tests/fuzz/make_seeds.py tests/fuzz/corpus/gguf_reader
"""
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/gguf_reader")
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
print(f"wrote {len(list(out.glob('*.gguf')))} seeds to {out}")
