"""``ferry-worker import``: one batch of an ImportJob run, files in S3 into one table.

``main.py`` runs the batch (attempts, termination message), ``listing.py`` finds the
batch's files, ``streams.py`` and ``readers.py`` turn a file into COPY input,
``table.py`` matches its columns to the table's, ``load.py`` runs the COPYs and isolates
rows the database refuses, ``ledger.py`` records what landed, ``audit.py`` writes the
rejected rows to S3. The contract is docs/worker.md, ``ferry-worker import``.
"""
