"""The export worker: one batch of a run, from PostgreSQL to S3 (``ferry-worker``).

Modules: ``plan`` (input contract), ``sql`` (query building), ``source`` (COPY
streaming), ``formats`` (types and file formats), ``codecs`` (gzip/zstd), ``splitting``
(file size limit), ``upload`` (S3 multipart), ``layout`` (object keys), ``manifest``
(commit record, termination message), ``progress`` (pod annotation), ``batch`` (one
attempt and its commit protocol), ``main`` (CLI, retries, exit codes). The contract is
documented in docs/worker.md.
"""
