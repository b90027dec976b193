"""Ferry: Kubernetes-native scheduled bulk data exports."""

__version__ = "0.1.0"
