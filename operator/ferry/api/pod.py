"""Settings for the worker pods that move the data (the operator creates them via Jobs).

Only the knobs an export needs are modelled, explicitly, so the CRD schema stays
structural and values are validated; anything else belongs in the Helm chart's
worker defaults. Map keys (resource names, node label keys) cannot carry a schema
pattern in a structural schema: the API server checks them when the operator
creates the Job, and the controller reports a rejection as a condition.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator

from ferry.api.base import DNS1123_SUBDOMAIN, FerryModel, cel, require, validations
from ferry.api.output import int_or_string_schema
from ferry.api.units import QUANTITY_PATTERN

LABEL_KEY_PATTERN = r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

Quantity = Annotated[int | str, WithJsonSchema(int_or_string_schema(QUANTITY_PATTERN))]
ResourceList = Annotated[
    dict[str, Quantity],
    Field(max_length=16),
]

MSG_EXISTS_NO_VALUE = "a toleration with operator Exists must not set value"
MSG_SECONDS_NO_EXECUTE = "tolerationSeconds only applies to effect NoExecute"


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """Taint effects."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(FerryModel):
    """A pod toleration (the shape of core/v1 Toleration)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.operator != 'Exists' || !has(self.value)",
                MSG_EXISTS_NO_VALUE,
                field_path=".value",
            ),
            cel(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                MSG_SECONDS_NO_EXECUTE,
                field_path=".tolerationSeconds",
            ),
        )
    )

    key: Annotated[str, Field(max_length=317, pattern=LABEL_KEY_PATTERN)] | None = Field(
        default=None, description="Taint key to match; absent with operator Exists matches all."
    )
    operator: TolerationOperator = Field(
        default=TolerationOperator.EQUAL, description="Equal (default) or Exists."
    )
    value: Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)] | None = Field(
        default=None, description="Taint value to match (operator Equal)."
    )
    effect: TaintEffect | None = Field(
        default=None,
        description="Effect to match: NoSchedule, PreferNoSchedule, NoExecute; absent matches all.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        require(
            self.operator != TolerationOperator.EXISTS or self.value is None, MSG_EXISTS_NO_VALUE
        )
        require(
            self.toleration_seconds is None or self.effect == TaintEffect.NO_EXECUTE,
            MSG_SECONDS_NO_EXECUTE,
        )
        return self


class Resources(FerryModel):
    """Compute resources of each worker container (the shape of core/v1 ResourceRequirements)."""

    requests: ResourceList | None = Field(
        default=None, description="Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."
    )
    limits: ResourceList | None = Field(
        default=None, description="Maximum resources, e.g. {memory: 1Gi}."
    )


class WorkerPod(FerryModel):
    """Pod settings for this job's worker pods. Absent fields use the operator's defaults."""

    image: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^\S+$")] | None = Field(
        default=None,
        description="Worker image. Absent: the operator's configured ferry-worker image.",
    )
    resources: Resources | None = Field(default=None, description="CPU and memory per worker pod.")
    service_account_name: (
        Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)] | None
    ) = Field(
        default=None,
        description="ServiceAccount of the worker pods. Absent: the operator's worker "
        "ServiceAccount.",
    )
    node_selector: (
        Annotated[
            dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]],
            Field(max_length=32),
        ]
        | None
    ) = Field(default=None, description="Node labels the worker pods must run on (at most 32).")
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = Field(
        default=None, description="Taints the worker pods tolerate (at most 32)."
    )
