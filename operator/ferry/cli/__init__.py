"""The `kubectl ferry` plugin: the seeds' job buttons as kubectl verbs."""
