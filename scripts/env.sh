# Sourced by every script: where the cache lives and how cargo finds libtorch. Safe to source twice.
# shellcheck shell=bash
export FIREWEAVE_CACHE="${FIREWEAVE_CACHE:-$HOME/.cache/fireweave-ai}"
export FIREWEAVE_VENV="$FIREWEAVE_CACHE/venv"
export FIREWEAVE_FIXTURES="${FIREWEAVE_FIXTURES:-$FIREWEAVE_CACHE/fixtures}"
# One target dir for every clone on this machine: llama.cpp and the libtorch bindings build once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$FIREWEAVE_CACHE/target}"
export PATH="$FIREWEAVE_VENV/bin:$PATH"
if [[ -z "${LIBTORCH:-}" && -x "$FIREWEAVE_VENV/bin/python" ]]; then
  _torch_dir="$(ls -d "$FIREWEAVE_VENV"/lib/python3*/site-packages/torch 2>/dev/null | head -n 1)"
  [[ -n "$_torch_dir" ]] && export LIBTORCH="$_torch_dir"
  unset _torch_dir
fi
# build.rs bakes this directory into the binary's rpath; the variable covers test binaries of other crates too.
if [[ -n "${LIBTORCH:-}" ]]; then
  export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# llama.cpp (feature `serve`) is built with GGML_NATIVE off and, without a Rust target-cpu, only SSE2 kernels:
# several times slower than `pip install llama-cpp-python`. Turn on what this CPU has; the build script passes
# GGML_* variables to CMake. (Images built elsewhere set these for their baseline, x86-64-v3.)
if [[ -z "${GGML_AVX2:-}" && -r /proc/cpuinfo ]] && grep -qw avx2 /proc/cpuinfo; then
  export GGML_AVX=ON GGML_AVX2=ON
  grep -qw fma /proc/cpuinfo && export GGML_FMA=ON
  grep -qw f16c /proc/cpuinfo && export GGML_F16C=ON
  grep -qw bmi2 /proc/cpuinfo && export GGML_BMI2=ON
  # The int8 dot products of quantized matmuls (VNNI) and 512-bit lanes, where the CPU has them: the evaluate
  # step's loss pass over Q8_0 / Q4_K_M ran 1.15x / 1.4x faster with them on this project's AVX-512 machine.
  grep -qw avx_vnni /proc/cpuinfo && export GGML_AVX_VNNI=ON
  if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
    grep -qw avx512dq /proc/cpuinfo && grep -qw avx512cd /proc/cpuinfo; then
    export GGML_AVX512=ON
    grep -qw avx512_vnni /proc/cpuinfo && export GGML_AVX512_VNNI=ON
    grep -qw avx512vbmi /proc/cpuinfo && export GGML_AVX512_VBMI=ON
    grep -qw avx512_bf16 /proc/cpuinfo && export GGML_AVX512_BF16=ON
  fi
fi
