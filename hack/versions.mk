# Pinned versions of everything the Makefile builds from source. One place only.
KUBERNETES_VERSION := 1.37.2
ETCD_VERSION := 3.7.0
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
HELM_VERSION := 3.22.0
KUBECONFORM_VERSION := 0.8.0
KIND_VERSION := 0.33.0
