#!/usr/bin/env bash
# The trainer image's binary (scripts/docker/trainer.Dockerfile builds exactly this command, in release) must
# link libtorch_cuda.so when the libtorch it builds against is a CUDA build: otherwise CUDA kernels are never
# registered and the trainer sees no GPU. build.rs does the linking; this checks the result, then asks the
# binary itself (`doctor`) what it can do.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
bin="$(cargo build --locked --no-default-features --features train,serve --bin fireweave-ai --message-format=json-render-diagnostics |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$bin" ]] || { echo "error: no executable reported by cargo" >&2; exit 1; }
needed="$(readelf -d "$bin" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $5); print $5 }')"
if [[ -f "${LIBTORCH:?}/lib/libtorch_cuda.so" ]]; then
  grep -qx 'libtorch_cuda.so' <<<"$needed" || {
    echo "error: $bin does not list libtorch_cuda.so in its dynamic section although $LIBTORCH is a CUDA build" >&2
    exit 1
  }
fi
"$bin" doctor | grep -E '^(features|libtorch)'
echo "ok: $bin needs: $(tr '\n' ' ' <<<"$needed")"
