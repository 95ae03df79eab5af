# Sourced by the control-plane scripts: Go's module and build caches live in the project's cache, not in ~/go.
# shellcheck shell=bash
export FIREWEAVE_CACHE="${FIREWEAVE_CACHE:-$HOME/.cache/fireweave-ai}"
export GOMODCACHE="${GOMODCACHE:-$FIREWEAVE_CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$FIREWEAVE_CACHE/go/build}"
# The pinned modules name the Go they need; never fetch another toolchain silently.
export GOTOOLCHAIN=local
