#!/usr/bin/env bash
# Idempotent set-up for building, testing and running fireweave-ai on a fresh Debian machine.
#
# Installs the Debian packages the native dependencies need (cmake + libclang for llama.cpp's bindings),
# a Python venv with libtorch (torch==2.11.0 pairs with tch 0.24) and the packages that produce test
# fixtures and reference values, then writes an env file that every other script sources. Everything is
# cached outside the repository so a second run, or a new clone on the same machine, takes seconds.
set -euo pipefail

CACHE="${FIREWEAVE_CACHE:-$HOME/.cache/fireweave-ai}"
VENV="$CACHE/venv"
STAMP="$CACHE/.provisioned"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$here/requirements.txt"
mkdir -p "$CACHE"

log() { printf '[provision] %s\n' "$*" >&2; }

# The stamp records the requirement set it was made with, so editing requirements.txt re-provisions.
want="$(sha256sum "$REQS" "$0" | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  log "up to date ($CACHE)"
  exit 0
fi

# cmake + libclang: llama.cpp's bindings. lua5.1 + lua5.4: the Argo CD health-check tests (Argo CD runs Lua 5.1).
apt_pkgs=(cmake clang libclang-dev pkg-config lua5.1 lua5.4)
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
log "installing Python packages (torch is ~4.7 GB the first time)"
PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"

echo "$want" > "$STAMP"
log "done"
