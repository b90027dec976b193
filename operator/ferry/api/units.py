"""Parsing of the two unit-bearing string formats in the API: quantities and durations.

Both are validated by a pattern in the CRD; these parsers give the controller and the
worker the numbers behind the strings.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""The Kubernetes resource.Quantity syntax (as emitted by controller-gen)."""

DURATION_PATTERN = r"^([0-9]{1,6}[wdhms]){1,5}$"
"""A duration such as ``4h``, ``90m``, ``1d12h`` or ``2w``: units w, d, h, m, s."""

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")
_DURATION_PART = re.compile(r"([0-9]+)([wdhms])")
_DURATION_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_quantity(value: int | str) -> int:
    """The value of a Kubernetes quantity, rounded up to a whole number (of bytes).

    ``1024Mi`` -> 1073741824, ``1G`` -> 1000000000, ``1.5Ki`` -> 1536, ``7`` -> 7.
    Exponent forms (``1e3``) are accepted as Kubernetes does. Raises ``ValueError``.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return value
    text = value.strip()
    match = _QUANTITY.match(text)
    try:
        if match:
            number, suffix = Decimal(match.group(1)), match.group(2)
            scaled = number * _BINARY[suffix] if suffix in _BINARY else number * _DECIMAL[suffix]
        elif re.fullmatch(r"[+-]?[0-9.]+[eE][+-]?[0-9.]+", text):
            scaled = Decimal(text)
        else:
            raise ValueError(f"not a Kubernetes quantity: {value!r} (use e.g. 1024Mi or 1G)")
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc
    return math.ceil(scaled)


def parse_duration(value: str) -> timedelta:
    """A duration like ``4h`` or ``1d12h`` (units w, d, h, m, s). Raises ``ValueError``."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"not a duration: {value!r} (use e.g. 4h, 90m, 1d12h)")
    seconds = sum(int(n) * _DURATION_UNIT[u] for n, u in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)
