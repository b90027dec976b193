"""`kubectl ferry ui`: the Jobs, History, run and job pages served on 127.0.0.1 with the
user's own kubeconfig (docs/ui.md)."""
