#!/usr/bin/env bash
# Builds the parts of a real kubelet node (`python -m hack.cluster up --node kubelet`)
# from their Go modules into .cache/node/, only when missing: containerd (its daemon,
# ctr and the runc shim) and the CNI plugins (bridge, host-local, loopback).
# The kubelet and kube-proxy come from the control plane's own throwaway module
# (hack/build-kubernetes.sh --node). runc itself is Debian's package. Also the sandbox's
# pause binary.
#
#   hack/build-node.sh                # build what is missing
#   hack/build-node.sh --bin-dir      # print the directory holding the binaries
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

version_of() {
  local key="$1" v
  v="$(sed -n "s/^${key}[[:space:]]*:=[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*$/\1/p" "$root/hack/versions.mk")"
  [[ -n "$v" ]] || { echo "error: $key is not set in hack/versions.mk" >&2; exit 1; }
  echo "$v"
}
containerd_version="$(version_of CONTAINERD_VERSION)"
cni_version="$(version_of CNI_PLUGINS_VERSION)"
bin="$root/.cache/node/containerd-$containerd_version-cni-$cni_version/bin"
if [[ "${1:-}" == "--bin-dir" ]]; then echo "$bin"; exit 0; fi

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED="${CGO_ENABLED:-1}"
need_go() { command -v go >/dev/null || { echo "error: 'go' not found: install Go 1.24 or newer" >&2; exit 1; }; }

containerd_cmds=(containerd ctr containerd-shim-runc-v2)
cni_cmds=(bridge host-local loopback)
missing=()
for c in "${containerd_cmds[@]}" "${cni_cmds[@]}"; do [[ -x "$bin/$c" ]] || missing+=("$c"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  need_go
  mkdir -p "$bin"
  for c in "${missing[@]}"; do
    case "$c" in
      containerd|ctr|containerd-shim-runc-v2)
        pkg="github.com/containerd/containerd/v2/cmd/$c@$containerd_version"
        # The version containerd reports (its Makefile's -X flags).
        ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version" ;;
      *)
        case "$c" in bridge|loopback|host-device) kind=main ;; host-local) kind=ipam ;; *) kind=meta ;; esac
        pkg="github.com/containernetworking/plugins/plugins/$kind/$c@$cni_version"
        ldflags="-s -w" ;;
    esac
    echo ">> go install $pkg"
    # The shim must be static: runc starts it with the container's view of nothing else.
    if [[ "$c" == containerd-shim-runc-v2 ]]; then cgo=0; else cgo="$CGO_ENABLED"; fi
    GOBIN="$bin" CGO_ENABLED="$cgo" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
      -ldflags="$ldflags" "$pkg"
  done
fi
# The pod sandbox's pause process, from Kubernetes' own source (build/pause), static so
# that the sandbox image (hack/realnode.py writes it) holds nothing else.
if [[ ! -x "$bin/pause" ]]; then
  need_go
  k8s_version="$(version_of KUBERNETES_VERSION)"
  src="$(go mod download -json "k8s.io/kubernetes@v$k8s_version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  command -v gcc >/dev/null || { echo "error: gcc not found: install gcc" >&2; exit 1; }
  gcc -Os -static -DVERSION="v$k8s_version" -o "$bin/pause.tmp" "$src/build/pause/linux/pause.c"
  strip "$bin/pause.tmp" && mv "$bin/pause.tmp" "$bin/pause"
fi
command -v runc >/dev/null || {
  command -v apt-get >/dev/null || { echo "error: runc is missing and apt-get is not available: install runc" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
}
echo ">> node binaries ready in $bin"
