"""The worker's input: the plan and the secrets, read from the environment.

The controller resolves everything (time window, key range, batch index) before it
creates the Job, so the worker needs no Kubernetes API to know what to do. Non-secret
settings arrive as JSON in ``FERRY_PLAN`` (or a file named by ``FERRY_PLAN_FILE`` or
``--plan-file``); secrets arrive as separate environment variables filled from Secret
references, so they never appear in the Job spec:

``FERRY_SOURCE_DSN``
    libpq connection string or URI of the source database (required by ``export``;
    ``seal`` reads only the bucket).
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``
    S3 credentials; when absent boto3's default chain applies (e.g. IRSA).

Other environment: ``JOB_COMPLETION_INDEX`` (set by Indexed Jobs) is the batch index
when the plan does not fix one; ``POD_NAME`` / ``POD_NAMESPACE`` (downward API) turn on
the progress annotation; ``FERRY_TERMINATION_MESSAGE_PATH`` overrides
``/dev/termination-log``. The full reference with an example is docs/worker.md.

The plan's types, fields and validation are the operator's and the worker's shared
contract (:mod:`ferry.contract.plan`); here every validation error becomes a
:class:`ConfigError` naming the offending field with its JSON path (``plan.keyRange.lo:
...``), because the reason ends up verbatim in the run's status and a user must be able
to act on it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from ferry.contract.importplan import ImportPlan, decode_import_plan
from ferry.contract.plan import Destination, Plan, PlanError, decode_plan
from ferry.worker.errors import ConfigError

__all__ = ["ConfigError", "Destination", "Plan", "Secrets", "load_import_plan", "load_plan",
           "load_secrets", "parse_plan"]


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Values taken from Secret-backed environment variables; never logged."""

    source_dsn: str
    """Empty for ``seal``, which never connects to the database."""
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_session_token: str | None
    sftp_user: str | None = None
    sftp_password: str | None = None
    sftp_private_key: str | None = None
    """An OpenSSH or PEM private key's text (``FERRY_SFTP_PRIVATE_KEY``)."""


def _completion_index(env: Mapping[str, str]) -> int:
    value = env.get("JOB_COMPLETION_INDEX", "0")
    if not value.isdigit():
        raise ConfigError(f"JOB_COMPLETION_INDEX: must be an integer >= 0, got {value!r}")
    return int(value)


def parse_plan(raw: object, env: Mapping[str, str], batch_index: int | None = None, *,
               sealing: bool = False) -> Plan:
    """Validate a decoded plan; ``batch_index`` (CLI) beats the plan beats the env's
    ``JOB_COMPLETION_INDEX`` (with ``slices``: the position in them). ``sealing`` is
    ``ferry-worker seal`` (see :func:`ferry.contract.plan.decode_plan`)."""
    try:
        return decode_plan(raw, lambda: _completion_index(env), batch_index, sealing=sealing)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None


def _plan_document(env: Mapping[str, str], plan_file: str | None) -> object:
    """The decoded JSON of ``--plan-file``, ``FERRY_PLAN_FILE`` or ``FERRY_PLAN``."""
    path = plan_file or env.get("FERRY_PLAN_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"plan file {path}: {exc.strerror}") from None
        origin = f"plan file {path}"
    elif env.get("FERRY_PLAN"):
        text, origin = env["FERRY_PLAN"], "FERRY_PLAN"
    else:
        raise ConfigError("FERRY_PLAN: is required (JSON plan; or FERRY_PLAN_FILE / --plan-file)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    return raw


def load_plan(env: Mapping[str, str], plan_file: str | None = None,
              batch_index: int | None = None, *, sealing: bool = False) -> Plan:
    """Read the plan from ``--plan-file``, ``FERRY_PLAN_FILE`` or ``FERRY_PLAN``."""
    return parse_plan(_plan_document(env, plan_file), env, batch_index, sealing=sealing)


def load_import_plan(env: Mapping[str, str], plan_file: str | None = None,
                     batch_index: int | None = None) -> ImportPlan:
    """Read ``ferry-worker import``'s plan (:mod:`ferry.contract.importplan`) from the
    same places."""
    try:
        return decode_import_plan(_plan_document(env, plan_file),
                                  lambda: _completion_index(env), batch_index)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None


def load_secrets(env: Mapping[str, str], *, source: bool = True) -> Secrets:
    """Read the Secret-backed variables; only the source DSN is mandatory, and only with
    ``source`` (``seal`` reads the bucket alone, so its pod is given no DSN)."""
    dsn = env.get("FERRY_SOURCE_DSN", "") if source else ""
    if source and not dsn.strip():
        raise ConfigError("FERRY_SOURCE_DSN: is required (source connection string from a Secret)")
    key_id = env.get("AWS_ACCESS_KEY_ID") or None
    secret = env.get("AWS_SECRET_ACCESS_KEY") or None
    if (key_id is None) != (secret is None):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither")
    return Secrets(dsn, key_id, secret, env.get("AWS_SESSION_TOKEN") or None,
                   sftp_user=env.get("FERRY_SFTP_USER") or None,
                   sftp_password=env.get("FERRY_SFTP_PASSWORD") or None,
                   sftp_private_key=env.get("FERRY_SFTP_PRIVATE_KEY") or None)
