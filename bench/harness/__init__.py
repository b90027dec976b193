"""What every operator benchmark scenario needs, written once (`bench/scenarios/` use it).

- `cluster`: the cluster under test (KUBECONFIG's, or the local one from `hack.cluster`),
  its CRDs, the API server's own 429 counter;
- `namespaces`: one labelled namespace per measurement, and its removal;
- `exportjobs`: the benchmark's ExportJobs, and the Jobs the operator renders for them;
- `operator_process`: `ferry-operator` as a child process, sampled by psutil;
- `jobwatch`: when each Job is first seen, by a watch of its own;
- `metrics`: the operator's /metrics and the 429s in its log;
- `stats`, `report`, `settings`: percentiles, output, the run's settings.

Names the operator defines (API group, plurals, labels, annotations, metric names, its
default worker count) are imported from `ferry`, never copied.
"""
