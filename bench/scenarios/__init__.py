"""The operator benchmark's scenarios over `bench.harness`, each a `run(jobs, settings)`
returning the object recorded in bench/results/operator.json:

- `slot_burst`: cold start with N ExportJobs, idle, then all N due in the same minute;
- `floor`: the same N Jobs created with no operator, the cluster's own limit;
- `soak`: N ExportJobs cycling for minutes, sampled for growth.
"""
