#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok)
# from the pinned Go modules under tests/cluster/ and prints the folder that holds the binaries. The folder is
# named after the pinned versions and carries a stamp of the exact go.mod/go.sum/flags it was built from, so a
# second run returns at once and a re-pin builds a new folder beside the old one.
#
#   FIREWEAVE_CLUSTER_BIN="$(bash scripts/cluster.sh)"
#
# Cold (empty Go module and build caches: modules downloaded from the proxy, most of Kubernetes compiled) this
# took 5 min 41 s on the 2-core machine with nothing else running, 8 min 24 s beside a cargo build; 1.9 GiB peak
# memory. A second run only checks the stamp (0.06 s); Go's build cache (under $FIREWEAVE_CACHE/go) makes a
# rebuild after a flag change much faster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mods="$root/tests/cluster"
# shellcheck source=tests/cluster/goenv.sh
source "$mods/goenv.sh"

# The versions come from the pinned modules themselves, never from a second list that could disagree.
required() { awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$mods/$1/go.mod"; }
k8s="$(required kubernetes k8s.io/kubernetes)"
etcd="$(required etcd go.etcd.io/etcd/server/v3)"
kwok="$(required kwok sigs.k8s.io/kwok)"
[[ -n "$k8s" && -n "$etcd" && -n "$kwok" ]] || { echo "cluster.sh: cannot read the pinned versions in $mods" >&2; exit 1; }

dest="$FIREWEAVE_CACHE/cluster/k8s-$k8s-etcd-$etcd-kwok-$kwok"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

# Upstream's release flags (hack/lib/golang.sh): static binaries, no debug tables, the selinux tag, and no
# test-only code paths. Module zips carry gitVersion v0.0.0-master, so the version is stamped as the release's
# build scripts do, in both packages that report it (apiserver /version, kubectl, kwok's version checks).
major="${k8s#v}"; major="${major%%.*}"
minor="${k8s#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
flags=(-trimpath -tags selinux,notest)

stamp="$(
  {
    go version
    printf '%s\n' "${flags[@]}" "$ldflags"
    cat "$mods"/{kubernetes,etcd,kwok}/go.{mod,sum}
  } | sha256sum | cut -d' ' -f1
)"
if [[ -f "$dest/stamp" && "$(cat "$dest/stamp")" == "$stamp" ]] \
  && for b in "${bins[@]}"; do [[ -x "$dest/bin/$b" ]] || exit 1; done; then
  echo "$dest/bin"
  exit 0
fi

mkdir -p "$FIREWEAVE_CACHE/cluster"
tmp="$(mktemp -d "$FIREWEAVE_CACHE/cluster/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
start=$SECONDS
echo "cluster.sh: building the test control plane (kubernetes $k8s, etcd $etcd, kwok $kwok) into $dest" >&2

export CGO_ENABLED=0
# Each module is built on its own so that its go.sum alone decides its dependency versions (etcd and Kubernetes
# pin different grpc and otel releases).
(cd "$mods/kubernetes" && nice -n 10 go build "${flags[@]}" -ldflags "$ldflags" -o "$tmp/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
(cd "$mods/etcd" && nice -n 10 go build "${flags[@]}" -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3)
(cd "$mods/kwok" && nice -n 10 go build "${flags[@]}" -ldflags "-s -w" -o "$tmp/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)

"$tmp/bin/kube-apiserver" --version >&2
echo "$stamp" >"$tmp/stamp"
# Publish by rename: a half-built folder is never mistaken for a finished one, and a build killed midway
# leaves only its temp folder behind.
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "cluster.sh: built in $((SECONDS - start)) s" >&2
echo "$dest/bin"
