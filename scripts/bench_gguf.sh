#!/usr/bin/env bash
# GGUF benchmark: ours vs llama.cpp's convert_hf_to_gguf.py + llama_model_quantize, then kernel throughput.
# Fetches llama.cpp's converter from the llama-cpp-python sdist on PyPI (its vendored llama.cpp sources) and
# the two Python packages the converter imports, into the cache; then runs the bench in release mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/provision.sh bench
# shellcheck source=scripts/env.sh
source scripts/env.sh
python tests/fixtures/make_fixtures.py

LCP_VERSION=0.3.16
dest="$FIREWEAVE_CACHE/llama.cpp-convert-$LCP_VERSION"
if [[ ! -f "$dest/convert_hf_to_gguf.py" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$LCP_VERSION"
  tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp" \
    "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
    "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/gguf-py"
  mkdir -p "$dest.partial"
  cp -r "$tmp/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/"{convert_hf_to_gguf.py,gguf-py} "$dest.partial/"
  mv "$dest.partial" "$dest"
fi
# Imported by the converter at start-up even for Llama checkpoints.
python -c 'import sentencepiece, mistral_common' 2>/dev/null || pip install -q sentencepiece mistral-common

export FIREWEAVE_CONVERT_HF="$dest/convert_hf_to_gguf.py"
cargo bench --locked --no-default-features --features serve --bench gguf_pipeline
