#!/usr/bin/env bash
# The operator image carries only `cargo build --no-default-features`; this fails if that binary links
# libtorch or llama.cpp, which would mean a feature gate leaked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
# A separate target dir keeps this binary from replacing the full-featured one the tests run.
target="$CARGO_TARGET_DIR/operator"
CARGO_TARGET_DIR="$target" cargo build --locked --no-default-features --bin fireweave-ai
bin="$target/debug/fireweave-ai"
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
