"""kopf admission handlers: thin wrappers around ``ferry.reconcile.admission``.

kopf serves each handler at ``/<handler id>`` on the server that ``ferry-operator
--webhook-port`` configures (main.py); the chart's Validating- and
MutatingWebhookConfiguration point at these paths. kopf does not manage the webhook
configurations (``settings.admission.managed`` stays unset): the chart owns them.

``register`` adds them to a kopf registry through kopf's public decorators: to kopf's
default registry when ``handlers.py`` imports this module, and to a standby replica's
own registry (main.py), which serves only these and kopf's login.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import kopf

from ferry.constants import EXPORTJOB_PLURAL, GROUP, IMPORTJOB_PLURAL, JOBGROUP_PLURAL, VERSION
from ferry.reconcile import admission
from ferry.reconcile.admission import Refusal


def _refuse(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise kopf.AdmissionError(refusal.message, code=refusal.code)


def _raw(body: kopf.Body | None) -> dict[str, Any] | None:
    return None if body is None else dict(body)


def validate_exportjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                       **_: Any) -> None:
    _refuse(admission.check_exportjob(operation, _raw(new), _raw(old)))


def guard_exportjob_delete(operation: str, old: kopf.Body | None, **_: Any) -> None:
    _refuse(admission.check_exportjob_delete(operation, _raw(old)))


def validate_importjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                       **_: Any) -> None:
    _refuse(admission.check_importjob(operation, _raw(new), _raw(old)))


def guard_importjob_delete(operation: str, old: kopf.Body | None, **_: Any) -> None:
    _refuse(admission.check_importjob_delete(operation, _raw(old)))


def validate_jobgroup(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                      **_: Any) -> None:
    _refuse(admission.check_jobgroup(operation, _raw(new), _raw(old)))


def _record_users(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                  userinfo: dict[str, Any], patch: kopf.Patch) -> None:
    for key, value in admission.record_users(operation, _raw(new), _raw(old),
                                             userinfo).items():
        patch.metadata.annotations[key] = value


def record_user_exportjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                          userinfo: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    _record_users(operation, new, old, userinfo, patch)


def record_user_importjob(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                          userinfo: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    _record_users(operation, new, old, userinfo, patch)


def record_user_jobgroup(operation: str, new: kopf.Body | None, old: kopf.Body | None,
                         userinfo: dict[str, Any], patch: kopf.Patch, **_: Any) -> None:
    _record_users(operation, new, old, userinfo, patch)


def register(registry: kopf.OperatorRegistry | None = None) -> None:
    """Serve the admission handlers from ``registry`` (None: kopf's default registry).

    The handlers take only the kwargs they use, so they do not match kopf's full
    WebhookFn signature (hence the ignores), as with kopf's own decorator syntax."""
    jobs, groups = (GROUP, VERSION, EXPORTJOB_PLURAL), (GROUP, VERSION, JOBGROUP_PLURAL)
    imports = (GROUP, VERSION, IMPORTJOB_PLURAL)
    writes: list[Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]] = ["CREATE", "UPDATE"]
    on = kopf.on
    on.validate(*jobs, id=admission.VALIDATE_EXPORTJOB, operations=writes,
                registry=registry)(validate_exportjob)  # type: ignore[arg-type]
    on.validate(*jobs, id=admission.GUARD_EXPORTJOB_DELETE, operations=["DELETE"],
                registry=registry)(guard_exportjob_delete)  # type: ignore[arg-type]
    on.validate(*groups, id=admission.VALIDATE_JOBGROUP, operations=writes,
                registry=registry)(validate_jobgroup)  # type: ignore[arg-type]
    on.mutate(*jobs, id=admission.RECORD_USER_EXPORTJOB, operations=writes,
              registry=registry)(record_user_exportjob)  # type: ignore[arg-type]
    on.mutate(*groups, id=admission.RECORD_USER_JOBGROUP, operations=writes,
              registry=registry)(record_user_jobgroup)  # type: ignore[arg-type]
    on.validate(*imports, id=admission.VALIDATE_IMPORTJOB, operations=writes,
                registry=registry)(validate_importjob)  # type: ignore[arg-type]
    on.validate(*imports, id=admission.GUARD_IMPORTJOB_DELETE, operations=["DELETE"],
                registry=registry)(guard_importjob_delete)  # type: ignore[arg-type]
    on.mutate(*imports, id=admission.RECORD_USER_IMPORTJOB, operations=writes,
              registry=registry)(record_user_importjob)  # type: ignore[arg-type]


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
