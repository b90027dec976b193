"""The base model and the small vocabulary every API module shares.

Every API model derives from :class:`FerryModel` so that YAML/JSON names are
Kubernetes camelCase while Python code uses snake_case, and so that a CEL rule
declared next to a field or model ends up in the generated CRD
(``x-kubernetes-validations``) *and* is checked in Python with the same message.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ferry.contract.limits import MAX_MESSAGE_CHARACTERS, MAX_SHORT_TEXT_CHARACTERS

VALIDATIONS_KEY = "x-kubernetes-validations"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Secret data key as the API server checks it (IsConfigMapKey): not "." or "..".
SECRET_DATA_KEY = r"^(?:[-_a-zA-Z0-9]|\.[-_a-zA-Z0-9]|\.\.[-._a-zA-Z0-9])[-._a-zA-Z0-9]*$"

RESOURCE_NAME_MAX = 52
"""Longest ExportJob/JobGroup name: run ids ``<name>.<n>`` and the operator's Job
names and label values derived from them must stay within 63 characters."""

NAME_RULE = f"self.size() <= {RESOURCE_NAME_MAX} && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
MSG_NAME = (
    f"must be a DNS-1123 label (lowercase letters, digits, '-') of at most "
    f"{RESOURCE_NAME_MAX} characters, because run ids <name>.<n> and Job names derive from it"
)

SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
SecretDataKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_DATA_KEY)]
ResourceName = Annotated[
    str, Field(min_length=1, max_length=RESOURCE_NAME_MAX, pattern=DNS1123_LABEL)
]
ShortText = Annotated[str, Field(max_length=MAX_SHORT_TEXT_CHARACTERS)]
Message = Annotated[str, Field(max_length=MAX_MESSAGE_CHARACTERS)]


class FerryModel(BaseModel):
    """Base of all API models: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored rather than rejected: the API server already prunes
    (or, with strict field validation, rejects) them, and an older operator must be
    able to read objects written against a newer schema.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        use_enum_values=False,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, JSON types, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` points the error at a child."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules into the generated CRD."""
    return {VALIDATIONS_KEY: list(rules)}


def exactly_one_rule(fields: list[str]) -> str:
    """CEL: exactly one of the (optional) ``fields`` is set."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


def at_most_one_rule(fields: list[str]) -> str:
    """CEL: at most one of the (optional) ``fields`` is set."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " <= 1"


def count_set(model: BaseModel, fields: list[str]) -> int:
    """How many of the named (snake_case) optional fields are set on ``model``."""
    return sum(getattr(model, f) is not None for f in fields)


def require(condition: bool, message: str) -> None:
    """Raise the CEL rule's message in Python when ``condition`` does not hold."""
    if not condition:
        raise ValueError(message)
