"""Liveness that means "this operator can still talk to the API server", and API calls
that never wait forever.

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
from collections.abc import Awaitable
from typing import Any

import aiohttp
import aiohttp.web
import kopf
from kubernetes_asyncio import client

log = logging.getLogger("ferry.health")

PROBE_TIMEOUT = 3.0
"""Seconds the probe's API round trip may take: below the chart's livenessProbe
timeoutSeconds (5), so the kubelet hears a failure rather than a hang."""

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)
"""The deadline of every controller API request that does not set its own."""


class BoundedApiClient(client.ApiClient):
    """An ApiClient whose requests have a deadline. kubernetes_asyncio sends a request
    without any timeout unless the call passes one; on a connection that died silently
    the request, and the reconcile waiting for it, would then wait forever, and that
    ExportJob would never be reconciled again (its key stays "in progress")."""

    def request(self, method: str, url: str, query_params: Any = None, headers: Any = None,
                post_params: Any = None, body: Any = None, _preload_content: bool = True,
                _request_timeout: Any = None) -> Awaitable[Any]:
        return super().request(  # type: ignore[no-any-return]
            method, url, query_params, headers, post_params, body, _preload_content,
            _request_timeout or REQUEST_TIMEOUT)


@kopf.on.probe(id="apiServer")
async def api_server_reachable(memo: kopf.Memo, **_: Any) -> dict[str, float]:
    """One cheap round trip (GET /version, which every authenticated client may read)
    through the controller's own client. Raising makes kopf's endpoint answer 500."""
    api: client.ApiClient | None = getattr(memo.get("controller"), "api", None)
    if api is None:
        return {"starting": 1.0}  # the startup handler has not run yet: alive, not stuck
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await client.VersionApi(api).get_code()
    except TimeoutError:
        raise kopf.PermanentError(
            f"API server did not answer within {PROBE_TIMEOUT:.0f}s") from None
    except (client.ApiException, aiohttp.ClientError, OSError) as e:
        raise kopf.PermanentError(f"API server unreachable: {type(e).__name__}") from None
    return {"roundTripSeconds": round(time.monotonic() - started, 3)}
