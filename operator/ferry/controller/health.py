"""Liveness that means "this operator can still talk to the API server".

kopf's liveness endpoint (`--liveness`) answers 200 as long as its event loop runs and
every `kopf.on.probe` handler succeeds; by itself it says nothing about the API server.
A watch stream that froze (traffic to the API server black-holed, a NAT entry dropped)
is noticed by kopf's inactivity timeout, which reconnects; but while the API server
cannot be reached at all the operator can do nothing, and the probe below then fails,
so the kubelet's livenessProbe restarts the pod after its failure threshold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from ferry.controller.kube import TRANSPORT_ERRORS, KubeApi

log = logging.getLogger("ferry.health")

PROBE_TIMEOUT = 3.0
"""Seconds the probe's API round trip may take: below the chart's livenessProbe
timeoutSeconds (5), so the kubelet hears a failure rather than a hang."""


@kopf.on.probe(id="apiServer")
async def api_server_reachable(memo: kopf.Memo, **_: Any) -> dict[str, float]:
    """One cheap round trip (GET /version, which every authenticated client may read)
    through the controller's own client. Raising makes kopf's endpoint answer 500."""
    kube: KubeApi | None = memo.get("kube")
    if kube is None:
        return {"starting": 1.0}  # the startup handler has not run yet: alive, not stuck
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await kube.version()
    except TimeoutError:
        raise kopf.PermanentError(
            f"API server did not answer within {PROBE_TIMEOUT:.0f}s") from None
    except TRANSPORT_ERRORS as e:
        raise kopf.PermanentError(f"API server unreachable: {type(e).__name__}") from None
    return {"roundTripSeconds": round(time.monotonic() - started, 3)}
