"""kopf admission handlers: thin wrappers around ``ferry.reconcile.admission``.

kopf serves each handler at ``/<handler id>`` on the server that ``ferry-operator
--webhook-port`` configures (main.py); the chart's Validating- and
MutatingWebhookConfiguration point at these paths. kopf does not manage the webhook
configurations (``settings.admission.managed`` stays unset): the chart owns them.

Imported by ``handlers.py``, which registers them with kopf.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf

from ferry.constants import EXPORTJOB_PLURAL, GROUP, JOBGROUP_PLURAL, VERSION
from ferry.reconcile import admission
from ferry.reconcile.admission import Refusal


def _refuse(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=refusal.code)


def _raw(body: kopf.Body | None) -> dict[str, Any] | None:
    return None if body is None else dict(body)


@kopf.on.validate(GROUP, VERSION, EXPORTJOB_PLURAL,  # type: ignore[arg-type]
                  id=admission.VALIDATE_EXPORTJOB, operations=["CREATE", "UPDATE"])
def validate_exportjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                       **_: Any) -> None:
    _refuse(admission.check_exportjob(operation, _raw(new), _raw(old)))


@kopf.on.validate(GROUP, VERSION, EXPORTJOB_PLURAL,  # type: ignore[arg-type]
                  id=admission.GUARD_EXPORTJOB_DELETE, operations=["DELETE"])
def guard_exportjob_delete(operation: str, old: kopf.Body | None, **_: Any) -> None:
    _refuse(admission.check_exportjob_delete(operation, _raw(old)))


@kopf.on.validate(GROUP, VERSION, JOBGROUP_PLURAL,  # type: ignore[arg-type]
                  id=admission.VALIDATE_JOBGROUP, operations=["CREATE", "UPDATE"])
def validate_jobgroup(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                      **_: Any) -> None:
    _refuse(admission.check_jobgroup(operation, _raw(new), _raw(old)))


def _record_users(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                  userinfo: dict[str, Any], patch: kopf.Patch) -> None:
    for key, value in admission.record_users(operation, _raw(new), _raw(old),
                                             userinfo).items():
        patch.metadata.annotations[key] = value


@kopf.on.mutate(GROUP, VERSION, EXPORTJOB_PLURAL,  # type: ignore[arg-type]
                id=admission.RECORD_USER_EXPORTJOB, operations=["CREATE", "UPDATE"])
def record_user_exportjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                          userinfo: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    _record_users(operation, new, old, userinfo, patch)


@kopf.on.mutate(GROUP, VERSION, JOBGROUP_PLURAL,  # type: ignore[arg-type]
                id=admission.RECORD_USER_JOBGROUP, operations=["CREATE", "UPDATE"])
def record_user_jobgroup(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                         userinfo: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    _record_users(operation, new, old, userinfo, patch)


class NoWebhookServer:
    """The "server" when ``--webhook-port`` is not given: it serves nothing.

    kopf refuses to start with admission handlers registered and no server configured;
    this one never listens and never yields a client config (it waits forever, as
    kopf's root tasks must), so the handlers stay idle. No webhook configuration should
    point at the operator then: chart ``webhook.enabled=false``.
    """

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        await asyncio.Event().wait()
        yield kopf.WebhookClientConfig()  # never reached; makes this an async generator
