"""The pages' buttons: each runs the plugin verb of the same name, as the user.

A button calls the very function `kubectl ferry VERB` calls (``jobs.cmd_run``,
``groups.cmd_stop``, ...) with the arguments the command line would give it, so its
checks, its messages and its request annotations are the plugin's; what the verb prints
becomes the page's message. A refusal (the verb's own check, RBAC, an admission webhook)
is a CliError whose one line names the verb and the resource, shown as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass

from ferry.cli import groups, jobs
from ferry.cli.context import Context
from ferry.cli.errors import CliError
from ferry.cli.kube import KIND_NAMES, Kube, Target
from ferry.constants import EXPORTJOB_PLURAL, IMPORTJOB_PLURAL, JOBGROUP_PLURAL
from ferry.reconcile.admission import check_exportjob_delete, check_importjob_delete

Verb = Callable[[Context, argparse.Namespace], int]

VERBS: dict[tuple[str, str], Verb] = {
    (EXPORTJOB_PLURAL, "run"): jobs.cmd_run,
    (EXPORTJOB_PLURAL, "stop"): jobs.cmd_stop,
    (EXPORTJOB_PLURAL, "retry"): jobs.cmd_retry,
    (EXPORTJOB_PLURAL, "suspend"): jobs.cmd_suspend,
    (EXPORTJOB_PLURAL, "resume"): jobs.cmd_resume,
    (EXPORTJOB_PLURAL, "clone"): jobs.cmd_clone,
    **{(IMPORTJOB_PLURAL, verb): fn for verb, fn in (
        ("run", jobs.cmd_run), ("stop", jobs.cmd_stop), ("retry", jobs.cmd_retry),
        ("suspend", jobs.cmd_suspend), ("resume", jobs.cmd_resume),
        ("clone", jobs.cmd_clone))},
    (JOBGROUP_PLURAL, "run"): groups.cmd_run,
    (JOBGROUP_PLURAL, "stop"): groups.cmd_stop,
    (JOBGROUP_PLURAL, "retry"): groups.cmd_retry,
}


@dataclass(frozen=True)
class Outcome:
    """What the page shows after a confirmed action."""

    ok: bool
    message: str


def arguments(plural: str, name: str, new: str | None, title: str | None) -> argparse.Namespace:
    """The Namespace argparse would build for ``kubectl ferry [group] VERB NAME`` (a button
    never waits: the page shows the run's progress instead of ``run --wait``)."""
    if plural == JOBGROUP_PLURAL:
        return argparse.Namespace(group=name)
    ref = f"importjob/{name}" if plural == IMPORTJOB_PLURAL else name
    return argparse.Namespace(job=ref, run=None, source=ref, new=new, title=title or None,
                              wait=False, follow=False, timeout=None)


def delete(kube: Kube, plural: str, name: str) -> str:
    """Delete, refused while a run is in progress with the admission webhook's own message
    (the same check, so the page says it whether or not the webhook is installed)."""
    guard = {EXPORTJOB_PLURAL: check_exportjob_delete,
             IMPORTJOB_PLURAL: check_importjob_delete}.get(plural)
    if guard is not None:
        refusal = guard("DELETE", kube.get(plural, name))
        if refusal is not None:
            raise CliError(refusal.message)
    kube.delete(plural, name)
    return f"{KIND_NAMES[plural]}.ferry.dev/{name} deleted\n"


def perform(kube: Kube, plural: str, namespace: str, name: str, action: str,
            new: str | None = None, title: str | None = None) -> Outcome:
    """Run one action on one object in its namespace, as the user."""
    scoped = kube.scoped(namespace)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(target=Target(None, None, namespace, False), now=dt.datetime.now(dt.UTC),
                  out=out, err=err)
    ctx.kube = scoped  # the UI's connection, not a second kubeconfig load
    try:
        if action == "delete" and plural in KIND_NAMES:
            text = delete(scoped, plural, name)
        elif (plural, action) in VERBS:
            if action == "clone" and not new:
                raise CliError("clone needs the name of the copy")
            VERBS[(plural, action)](ctx, arguments(plural, name, new, title))
            text = out.getvalue()
        else:
            raise CliError(f'"{action}" is not an action for {plural}')
    except CliError as exc:
        return Outcome(False, f"error: {exc}")
    hints = err.getvalue()
    return Outcome(True, (text + hints).strip())
