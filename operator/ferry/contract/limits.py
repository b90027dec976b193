"""Limits the API admits and the worker accepts: one number each.

The API models use these in their schema (so the API server refuses more), and the
worker's plan validation uses the same (so a plan written by hand is held to what an
ExportJob could ask for). tests/unit/test_contract.py checks both sides.
"""

from typing import Final

MAX_FILTER_VALUES: Final = 100
"""Values of one `in` / `notIn` filter."""
MIN_FILE_SPLIT_BYTES: Final = 2**20
"""The smallest output.fileSplitSize (1Mi): smaller files cost more in requests than
they save, and a Parquet row group needs room."""
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


def fit(text: str, limit: int = MAX_MESSAGE_CHARACTERS) -> str:
    """``text`` cut to a status field's limit (the API server refuses the whole status
    write otherwise)."""
    return text[:limit]
