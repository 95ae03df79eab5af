#!/usr/bin/env bash
# The test command (README, CI): provision, build fixtures, then formatting, lints with and without the
# heavy features, the whole test suite, and a check that the operator build links neither libtorch nor llama.cpp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/provision.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

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

step "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# One closing tally over every test binary (the last binary cargo runs is often the empty doc-test one).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
