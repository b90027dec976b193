#!/usr/bin/env bash
# Builds the chart tools (helm, kubeconform, and on request kind) from their Go modules
# into .cache/tools/<name>-<version>/<name>, only when missing. Versions come from
# hack/versions.mk (the one place they are pinned).
#
#   hack/build-tools.sh                 # helm and kubeconform
#   hack/build-tools.sh helm kind       # just these
#   hack/build-tools.sh --path helm     # print the binary's path (builds it if missing)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# Read NAME_VERSION := x.y.z from versions.mk without repeating any number here.
version_of() {
  local key="$1" v
  v="$(sed -n "s/^${key}[[:space:]]*:=[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*$/\1/p" "$root/hack/versions.mk")"
  [[ -n "$v" ]] || { echo "error: $key is not set in hack/versions.mk" >&2; exit 1; }
  echo "${v#v}"
}

# -X flags so `helm version` / `kubeconform -v` print the pinned version.
ldflags_of() {
  case "$1" in
    helm)
      # Like Helm's own Makefile: the Kubernetes version `helm template` and `helm lint`
      # assume by default (else v1.20). Ours is the pinned KUBERNETES_VERSION.
      local k8s major minor
      k8s="$(version_of KUBERNETES_VERSION)"; major="${k8s%%.*}"; minor="${k8s#*.}"; minor="${minor%%.*}"
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=v$2" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" ;;
    kubeconform) echo "-s -w -X main.version=v$2" ;;
    *) echo "-s -w" ;;
  esac
}

module_of() {
  case "$1" in
    helm) echo "helm.sh/helm/v3/cmd/helm@v$2" ;;
    kubeconform) echo "github.com/yannh/kubeconform/cmd/kubeconform@v$2" ;;
    kind) echo "sigs.k8s.io/kind@v$2" ;;
    *) echo "error: unknown tool '$1' (helm, kubeconform, kind)" >&2; exit 1 ;;
  esac
}

tool_path() {
  local name="$1" version
  version="$(version_of "$(echo "$name" | tr '[:lower:]' '[:upper:]')_VERSION")"
  echo "$root/.cache/tools/$name-$version/$name"
}

build() {
  local name="$1" version dir module
  version="$(version_of "$(echo "$name" | tr '[:lower:]' '[:upper:]')_VERSION")"
  dir="$root/.cache/tools/$name-$version"
  [[ -x "$dir/$name" ]] && return 0
  command -v go >/dev/null || { echo "error: 'go' not found: install Go 1.24 or newer to build $name" >&2; exit 1; }
  module="$(module_of "$name" "$version")"
  echo ">> building $name $version from its Go module ($module) into $dir" >&2
  mkdir -p "$dir"
  # go install into a temporary GOBIN, then move: an interrupted build leaves nothing behind.
  local tmp
  tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$tmp" \
    go install -trimpath -ldflags="$(ldflags_of "$name" "$version")" "$module" >&2
  mv "$tmp/$name" "$dir/$name"
  rmdir "$tmp"
}

if [[ "${1:-}" == "--path" ]]; then
  shift
  build "${1:?usage: build-tools.sh --path NAME}"
  tool_path "$1"
  exit 0
fi

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm kubeconform)
for t in "${tools[@]}"; do build "$t"; done
