#!/usr/bin/env bash
# The operator image carries only `cargo build --no-default-features`; this fails if that binary links
# libtorch or llama.cpp, which would mean a feature gate leaked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
# Cargo reports the exact executable it produced; a later full-featured build replaces the uplifted copy,
# so the path is read from this build's own messages rather than assumed.
bin="$(cargo build --locked --no-default-features --bin fireweave-ai --message-format=json-render-diagnostics |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$bin" ]] || { echo "error: no executable reported by cargo" >&2; exit 1; }
libs="$(ldd "$bin")"
if grep -Ei 'torch|c10|llama|ggml' <<<"$libs"; then
  echo "error: $bin links a heavy library (above); the operator build must not" >&2
  exit 1
fi
if nm -C --defined-only "$bin" 2>/dev/null | grep -qE 'llama_decode|ggml_init|at::Tensor'; then
  echo "error: $bin contains llama.cpp or libtorch symbols" >&2
  exit 1
fi
echo "ok: $bin links only: $(awk '{print $1}' <<<"$libs" | tr '\n' ' ')"
