#!/usr/bin/env bash
# The test command (README, CI): provision, build fixtures, then formatting, lints with and without the
# heavy features, the whole test suite, and a check that the operator build links neither libtorch nor llama.cpp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/provision.sh test
# shellcheck source=scripts/env.sh
source scripts/env.sh
export FIREWEAVE_CLUSTER_BIN; FIREWEAVE_CLUSTER_BIN="$(bash scripts/cluster.sh)"  # control plane of tests/operator_cluster.rs
export FIREWEAVE_OLLAMA_RENDER; FIREWEAVE_OLLAMA_RENDER="$(bash scripts/ollama-render.sh)"  # Ollama's prompt rendering, tests/ollama_template.rs

step() { printf '\n==> %s\n' "$*" >&2; }

step "fixtures"
python tests/fixtures/make_fixtures.py

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (default features: train + serve)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo clippy (--no-default-features: the operator build)"
cargo clippy --all-targets --locked --no-default-features -- -D warnings

step "operator build links no libtorch and no llama.cpp"
bash scripts/check-operator-links.sh

# The feature sets the trainer and server images build (scripts/docker/; tests/chart/test_dockerfiles.py keeps
# their cargo commands equal to these).
step "image builds compile: trainer (train + serve for the evaluation, linking libtorch_cuda when the wheel has it), server (serve)"
bash scripts/check-trainer-links.sh
cargo check --locked --no-default-features --features serve --bin fireweave-ai

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "chart, manifests, images, Argo CD health checks (tests/chart, real Helm and Lua)"
python -m pytest -q -p no:cacheprovider tests/chart 2>&1 | tee -a "$log"

step "cargo test"
cargo test --locked 2>&1 | tee -a "$log"
# One closing tally over every test binary (the last binary cargo runs is often the empty doc-test one) and
# the pytest run ("N passed, M skipped in 9.1s").
awk '/^test result:/ { p += $4; f += $6; s += $8; next }
     / in [0-9.]+s/ && /(passed|failed)/ {
       for (i = 2; i <= NF; i++) {
         if ($i ~ /^passed,?$/) p += $(i - 1)
         if ($i ~ /^failed,?$/) f += $(i - 1)
         if ($i ~ /^skipped,?$/) s += $(i - 1)
       }
     }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
