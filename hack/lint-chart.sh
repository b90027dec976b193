#!/usr/bin/env bash
# `helm lint --strict` and `helm template | kubeconform -strict` for charts/ferry, in
# each of its shapes (cluster-wide with the default webhook, namespaced + webhook with
# Helm-made certificates, webhook with cert-manager, webhook off, ServiceMonitor and
# PrometheusRule on). Offline: kubeconform's schemas are generated from the
# k8s.io/kubernetes module's OpenAPI documents and crds/ (hack/kubeconform_schemas.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
bash hack/build-tools.sh helm kubeconform
helm="$(bash hack/build-tools.sh --path helm)"
kubeconform="$(bash hack/build-tools.sh --path kubeconform)"
schemas="$("$python" hack/kubeconform_schemas.py --quiet)"
k8s="$(sed -n 's/^KUBERNETES_VERSION[[:space:]]*:=[[:space:]]*//p' hack/versions.mk)"
chart=charts/ferry

# Each shape: a name and its --set flags.
shapes=(
  "cluster-wide|"
  "namespaced+webhook|--set watchNamespaces={team-a,team-b} --set webhook.enabled=true"
  "cert-manager|--set webhook.enabled=true --set webhook.certificate.source=cert-manager"
  "webhook-off|--set webhook.enabled=false"
  "monitoring|--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set metrics.serviceMonitor.labels.release=kube-prometheus-stack"
)
for shape in "${shapes[@]}"; do
  name="${shape%%|*}"; read -r -a flags <<<"${shape#*|}"
  echo ">> chart shape: $name"
  "$helm" lint --strict --kube-version "$k8s" "$chart" "${flags[@]}" --quiet
  # cert-manager's and the Prometheus Operator's kinds have no schema offline: they are
  # the only ones skipped (tests/e2e/test_chart.py checks their fields).
  "$helm" template ferry "$chart" --namespace ferry-system --include-crds \
      --kube-version "$k8s" "${flags[@]}" \
    | "$kubeconform" -strict -summary -schema-location "$schemas" \
        -skip Certificate,Issuer,ServiceMonitor,PrometheusRule -
done
