"""Limits the API admits and the worker accepts: one number each.

The API models use these in their schema (so the API server refuses more), and the
worker's plan validation uses the same (so a plan written by hand is held to what an
ExportJob could ask for). tests/unit/test_contract.py checks both sides. One pair is
deliberately not one number: the smallest file split, 1Mi in the API against the
worker's own lower floors (MIN_WORKER_SPLIT_BYTES, MIN_WORKER_PARQUET_SPLIT_BYTES);
what holds is that the worker accepts everything the API admits.
"""

from typing import Final

MAX_FILTER_VALUES: Final = 100
"""Values of one `in` / `notIn` filter."""
MAX_FILTERS: Final = 32
"""Filters source.filters may list (the plan's filters)."""
MIN_FILE_SPLIT_BYTES: Final = 2**20
"""The smallest output.fileSplitSize an ExportJob may ask for (1Mi): smaller files cost
more in requests than they save, and a Parquet row group needs room. The worker accepts
every split from here up, for every format (tests/unit/test_contract.py)."""
MIN_WORKER_SPLIT_BYTES: Final = 1024
"""The smallest fileSplitSize the worker itself takes for CSV and JSON Lines: a separate,
lower floor than the API's, kept on purpose. It is what the splitter can honour (a CSV
header and a record must fit), not what is sensible in production; plans written by hand
(the integration tests cut small tables into many 4-20 KiB files, a debugging run) reach
the worker without an ExportJob, and only the API's minimum protects a bucket from
needlessly many files."""
MIN_WORKER_PARQUET_SPLIT_BYTES: Final = 64 * 1024
"""As MIN_WORKER_SPLIT_BYTES, for Parquet: its files are cut by estimate and a footer and
a row group need room."""
TERMINATION_MESSAGE_BYTES: Final = 3900
"""The worker's termination message, one line of JSON: the kubelet keeps at most 4096
bytes of it, so the summary is shortened to fit under this (docs/worker.md)."""
MAX_IDENTIFIER_BYTES: Final = 63
"""A PostgreSQL identifier (NAMEDATALEN - 1): a column, a table, a schema."""
MAX_PREFIX_CHARACTERS: Final = 512
"""Length of output.s3.prefix (the plan's destination.prefix)."""
MAX_SELECTED_COLUMNS: Final = 256
"""Columns source.columns may list."""
MAX_QUERY_CHARACTERS: Final = 16_384
"""Length of source.query."""
MAX_BATCHES: Final = 1000
"""Batches (completion indexes) of one run."""
MAX_MESSAGE_CHARACTERS: Final = 4096
"""A message field in status (the API's maxLength): longer text is cut to fit."""
MAX_SHORT_TEXT_CHARACTERS: Final = 256
"""A short text field in status: a user name recorded from an annotation (createdBy,
startedBy), a summary. Longer text is cut to fit."""


def min_worker_split_bytes(file_format: str) -> int:
    """The worker's smallest fileSplitSize for a format (``parquet``, ``csv``, ``jsonl``)."""
    return MIN_WORKER_PARQUET_SPLIT_BYTES if file_format == "parquet" else MIN_WORKER_SPLIT_BYTES


def fit(text: str, limit: int = MAX_MESSAGE_CHARACTERS) -> str:
    """``text`` cut to a status field's limit (the API server refuses the whole status
    write otherwise)."""
    return text[:limit]
