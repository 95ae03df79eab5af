#!/usr/bin/env bash
# Builds tests/ollama/render — Ollama's own chat-prompt rendering (its template, parser and api packages at the
# release pinned in tests/ollama/go.mod) behind a JSON stdin/stdout filter — and prints the binary's path.
# tests/support/ollama.rs runs it to render the prompt Ollama builds from our Modelfile.
#
#   FIREWEAVE_OLLAMA_RENDER="$(bash scripts/ollama-render.sh)"
#
# The binary lives in a folder named after the pinned release with a stamp of the exact sources, go.mod/go.sum
# and flags it was built from, so a second run returns at once (0.03 s) and any change builds afresh. Measured on
# 2 cores: 71 s with empty Go caches (module download, then Go's standard library and Ollama's packages
# compiled), 49 s of which is compiling; 3 s from a fresh module download into a warm Go build cache. Re-pin with
#   cd tests/ollama && go get github.com/ollama/ollama@vX.Y.Z && go mod tidy
# to the release of the operator's default Ollama image (tests/ollama_template.rs checks that they agree).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$root/tests/ollama"
# shellcheck source=tests/cluster/goenv.sh
source "$root/tests/cluster/goenv.sh"

# The version comes from the pinned module itself, never from a second list that could disagree.
version="$(awk '($1 == "github.com/ollama/ollama" && $2 ~ /^v/) { print $2; exit }
                $1 == "require" && $2 == "github.com/ollama/ollama" { print $3; exit }' "$mod/go.mod")"
[[ -n "$version" ]] || { echo "ollama-render.sh: cannot read the pinned Ollama version in $mod/go.mod" >&2; exit 1; }

dest="$FIREWEAVE_CACHE/ollama-render/$version"
bin="$dest/ollama-render"
# Pure Go (no cgo): the packages used are Ollama's template, parser, thinking and api, not its llama.cpp runner.
flags=(-trimpath -ldflags "-s -w")

stamp="$(
  {
    go version
    printf '%s\n' "${flags[@]}"
    cat "$mod"/go.mod "$mod"/go.sum "$mod"/render/*.go
  } | sha256sum | cut -d' ' -f1
)"
if [[ -x "$bin" && -f "$dest/stamp" && "$(cat "$dest/stamp")" == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$FIREWEAVE_CACHE/ollama-render"
tmp="$(mktemp -d "$FIREWEAVE_CACHE/ollama-render/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "ollama-render.sh: building Ollama $version's prompt renderer into $dest" >&2
(cd "$mod" && CGO_ENABLED=0 go build "${flags[@]}" -o "$tmp/ollama-render" ./render)
# A binary that cannot render the simplest template is never published.
[[ "$(echo '{"template": "{{ range .Messages }}{{ .Content }}{{ end }}", "cases": [{"messages": [{"role": "user", "content": "ok"}]}]}' \
  | "$tmp/ollama-render")" == '{"prompts":["ok"]}' ]] || { echo "ollama-render.sh: the new binary does not render" >&2; exit 1; }
echo "$stamp" >"$tmp/stamp"
# Publish by rename: a half-built folder is never mistaken for a finished one. A concurrent run that published
# the same stamp first wins; ours is dropped.
if ! [[ -f "$dest/stamp" && "$(cat "$dest/stamp")" == "$stamp" ]]; then
  rm -rf "$dest"
  mv -T "$tmp" "$dest"
fi
echo "ollama-render.sh: built in $((SECONDS - start)) s" >&2
echo "$bin"
