#!/usr/bin/env bash
# Regenerates the pinned Go modules that build the test control plane. Run by hand when moving to another
# release; the go.mod/go.sum files it writes are committed and scripts/cluster.sh builds from them.
#
#   tests/cluster/pin.sh v1.36.3 v3.6.6 v0.8.0   # kubernetes, etcd, kwok
#
# k8s.io/kubernetes cannot be built with `go install pkg@version`: its go.mod requires every staging module
# (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it with a folder of its own repository. Our module
# requires k8s.io/kubernetes and replaces each staging module with the published v0.<minor>.<patch> of the same
# release. The list is read from that release's go.mod, never typed, so it cannot drift from the release.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/cluster/goenv.sh
source "$here/goenv.sh"
k8s="${1:?kubernetes version, e.g. v1.36.3}" etcd="${2:?etcd version, e.g. v3.6.6}" kwok="${3:?kwok version, e.g. v0.8.0}"
staging="v0.${k8s#v1.}"

gomod="$(go mod download -json "k8s.io/kubernetes@$k8s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"

cd "$here/kubernetes"
rm -f go.mod go.sum
go mod init fireweave.ai/tests/cluster/kubernetes >/dev/null 2>&1
go mod edit -go="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
# A dependency's godebug line is ignored, so the release's runtime defaults must be restated in the main module.
godebug="$(awk '$1 == "godebug" { print $2; exit }' "$gomod")"
[[ -n "$godebug" ]] && go mod edit -godebug="$godebug"
awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" | while read -r mod; do
  go mod edit -replace="$mod=$mod@$staging"
done
go mod edit -require="k8s.io/kubernetes@$k8s"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  go get -tool "k8s.io/kubernetes/cmd/$cmd@$k8s"
done
go mod tidy

cd "$here/etcd"
rm -f go.mod go.sum
go mod init fireweave.ai/tests/cluster/etcd >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@$etcd"
go mod tidy

cd "$here/kwok"
rm -f go.mod go.sum
go mod init fireweave.ai/tests/cluster/kwok >/dev/null 2>&1
go get -tool "sigs.k8s.io/kwok/cmd/kwok@$kwok"
go mod tidy
echo "pinned kubernetes $k8s (staging $staging), etcd $etcd, kwok $kwok" >&2
