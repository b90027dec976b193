#!/usr/bin/env bash
# `make kind-up`, for machines with Docker: a kind cluster (kind built from its Go
# module, version pinned in hack/versions.mk), the two images built and loaded into it,
# the chart installed. Then `KUBECONFIG=$(kind get kubeconfig-path) make test-e2e`, or
# simply `export KUBECONFIG=.cache/kind/kubeconfig; make test-e2e`.
# Not exercised by CI: this project's machines have no Docker engine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cluster="${KIND_CLUSTER_NAME:-ferry}"
namespace="${FERRY_NAMESPACE:-ferry-system}"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "error: make kind-up needs a running Docker engine (docker info failed); this path is not exercised by CI" >&2
  exit 1
fi

bash hack/build-tools.sh kind helm
kind="$(bash hack/build-tools.sh --path kind)"
helm="$(bash hack/build-tools.sh --path helm)"
k8s="$(sed -n 's/^KUBERNETES_VERSION[[:space:]]*:=[[:space:]]*//p' hack/versions.mk)"
tag="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/ferry/Chart.yaml)"
kubeconfig="$root/.cache/kind/kubeconfig"
mkdir -p "$(dirname "$kubeconfig")"

if ! "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  # kindest/node images exist for released Kubernetes versions; override with KIND_NODE_IMAGE.
  "$kind" create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 120s \
    --image "${KIND_NODE_IMAGE:-kindest/node:v$k8s}"
else
  "$kind" get kubeconfig --name "$cluster" > "$kubeconfig"
fi

for image in ferry-operator ferry-worker; do
  docker build -f "images/$image/Dockerfile" -t "$image:$tag" .
  "$kind" load docker-image --name "$cluster" "$image:$tag"
done

# Pod Security "restricted", enforced: the chart's pods and the worker pods must pass it.
kubectl_flags=(--kubeconfig "$kubeconfig")
if command -v kubectl >/dev/null 2>&1; then
  kubectl "${kubectl_flags[@]}" create namespace "$namespace" --dry-run=client -o yaml \
    | kubectl "${kubectl_flags[@]}" apply -f -
  kubectl "${kubectl_flags[@]}" label --overwrite namespace "$namespace" \
    pod-security.kubernetes.io/enforce=restricted
fi
"$helm" upgrade --install ferry charts/ferry --kubeconfig "$kubeconfig" \
  --namespace "$namespace" --create-namespace --wait --timeout 5m \
  --set operator.image.pullPolicy=Never
echo ">> kind cluster '$cluster' is up with Ferry installed in $namespace"
echo ">> export KUBECONFIG=$kubeconfig; make test-e2e"
