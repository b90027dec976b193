"""Pure reconcile logic: plain data in, decisions out; no I/O."""
