#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# from their Go modules into .cache/k8s/<version>/bin, only when missing; with --node
# also the kubelet and kube-proxy (the real node, hack/build-node.sh builds the rest).
#
# k8s.io/kubernetes is not meant to be used as a module dependency: its go.mod
# points the k8s.io/* staging modules at ./staging. A throwaway module that
# requires it and replaces each staging module with the matching v0.x release
# is the known way to build its commands with a plain Go toolchain.
set -euo pipefail
node=0
if [[ "${1:-}" == "--node" ]]; then node=1; shift; fi
version="${1:?usage: build-kubernetes.sh [--node] KUBERNETES_VERSION ETCD_VERSION}"
etcd_version="${2:?usage: build-kubernetes.sh KUBERNETES_VERSION ETCD_VERSION}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/k8s/$version"
bin="$cache/bin"
commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
if [[ $node == 1 ]]; then commands+=(kubelet kube-proxy); fi

# A binary counts as built only when it reports the pinned version: builds from before
# the version was stamped said v0.0.0-master+$Format:%H$, which helm's kubeVersion
# check refuses.
reports_version() {
  local c="$1" out
  [[ -x "$bin/$c" ]] || return 1
  case "$c" in
    kubectl) out="$("$bin/$c" version --client 2>/dev/null)" || return 1; [[ "$out" == *"v$version"* ]] ;;
    etcd) out="$("$bin/$c" --version 2>/dev/null)" || return 1; [[ "$out" == *"$etcd_version"* ]] ;;
    *) out="$("$bin/$c" --version 2>/dev/null)" || return 1; [[ "$out" == *"v$version"* ]] ;;
  esac
}

missing=()
for c in "${commands[@]}" etcd; do reports_version "$c" || missing+=("$c"); done
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
command -v go >/dev/null || { echo "error: 'go' not found: install Go 1.24 or newer" >&2; exit 1; }

echo ">> building Kubernetes v$version (${missing[*]}) from Go modules into $bin"
echo ">> this may take 15-30 minutes the first time on 2 cores; later runs reuse it"
src="$cache/src"
mkdir -p "$src" "$bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
cd "$src"
# A module made before the node's commands were wanted lacks their imports: add them.
if [[ -f go.mod && $node == 1 ]] && ! grep -q cmd/kubelet tools.go; then rm -f tools.go; fi
if [[ ! -f go.mod || ! -f tools.go ]]; then
  [[ -f go.mod ]] || {
  go mod init ferry.dev/hack/kubernetes >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@v$version" -require="go.etcd.io/etcd/server/v3@v$etcd_version"
  k8smod="$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging_version="v0.${version#1.}"
  for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$k8smod"); do
    go mod edit -replace="$m=$m@$staging_version"
  done
  }
  cat > tools.go <<GO
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  go mod tidy -e >/dev/null
fi
# The version stamp Kubernetes' own build sets (hack/lib/version.sh, kube::version::ldflags),
# so `kubectl version`, the API server's /version and helm's kubeVersion check see v$version.
minor="${version#*.}"; minor="${minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=${version%%.*} -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for c in "${missing[@]}"; do
  echo ">> go build $c"
  if [[ "$c" == etcd ]]; then pkg=go.etcd.io/etcd/server/v3; ldflags="-s -w"; else pkg="k8s.io/kubernetes/cmd/$c"; ldflags="$k8s_ldflags"; fi
  go build -trimpath -ldflags="$ldflags" -o "$bin/$c.tmp" "$pkg"
  mv "$bin/$c.tmp" "$bin/$c"
done
echo ">> Kubernetes v$version ready in $bin"
