"""The operator's one Kubernetes client: every request to the API server goes through here.

Only this module imports `kubernetes_asyncio` (an import-linter contract says so, as
kopf's "only the clients talk to the API"), so the reconcile loop, the kinds, the
leader election and the liveness probe see plain JSON in and out, and the unit tests
replace the whole API server with one in-memory fake of `KubeApi`
(tests/unit/fakekube.py).

Everything is raw JSON (`_preload_content=False`): turning answers into the generated
models (V1Job, V1Lease...) was a tenth of the operator's CPU at the top of the hour,
and a Lease's MicroTimes would lose the six fraction digits the API server's parser
wants. Expected answers are results, not exceptions: a GET of something gone is None,
a create of something that exists is None, a delete of something gone is done. What is
left raises `ApiError` with the HTTP status, which the loop maps to a retry (409: the
object moved on; read it again).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from ferry.constants import GROUP, VERSION

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)
"""The deadline of every request that does not set its own. kubernetes_asyncio sends a
request without any timeout unless the call passes one; on a connection that died
silently the request, and the reconcile waiting for it, would then wait forever, and
that object would never be reconciled again (its key stays "in progress")."""


class ApiError(Exception):
    """An answer of the API server that the caller did not expect (status >= 400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"API {status} {reason}")
        self.status = status
        self.reason = reason


TRANSPORT_ERRORS = (ApiError, aiohttp.ClientError, OSError, TimeoutError)
"""What one round trip may fail with when the API server cannot be reached or refuses."""


class KubeApi(Protocol):
    """What the operator asks of the API server; the real one is `Kube`."""

    async def get(self, plural: str, namespace: str, name: str) -> Body | None:
        """A Ferry object (ferry.dev/v1alpha1), or None when it does not exist."""

    async def replace_status(self, plural: str, obj: Body) -> Body:
        """PUT the status subresource, conditional on obj's resourceVersion (409 if stale)."""

    async def patch_metadata(self, plural: str, namespace: str, name: str,
                             metadata: Body) -> Body:
        """Merge-patch metadata (a resourceVersion in it makes the patch conditional)."""

    async def delete(self, plural: str, namespace: str, name: str,
                     resource_version: str | None = None) -> None:
        """Delete a Ferry object, only at ``resource_version`` when given; gone is done."""

    async def list_jobs(self, namespace: str, selector: str) -> Body:
        """batch/v1 Jobs matching a label selector: the List (items and metadata)."""

    async def create_job(self, manifest: Body) -> Body | None:
        """Create a Job; None when one of that name exists already."""

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, before it goes, its pods (foreground); gone is done."""

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        """Pods matching a label selector."""

    async def create_event(self, namespace: str, event: Body) -> None:
        """Post a core/v1 Event."""

    async def read_lease(self, namespace: str, name: str) -> Body | None:
        """A coordination.k8s.io/v1 Lease, or None when it does not exist."""

    async def create_lease(self, namespace: str, lease: Body) -> None:
        """Create a Lease (409 if another replica created it first)."""

    async def replace_lease(self, namespace: str, name: str, lease: Body) -> None:
        """Replace a Lease, conditional on its resourceVersion (409 if stale)."""

    async def version(self) -> Body:
        """GET /version: a round trip every authenticated client may make."""

    async def close(self) -> None:
        """Close the connection pool."""


class _BoundedApiClient(client.ApiClient):
    """An ApiClient whose requests have a deadline (REQUEST_TIMEOUT)."""

    def request(self, method: str, url: str, query_params: Any = None, headers: Any = None,
                post_params: Any = None, body: Any = None, _preload_content: bool = True,
                _request_timeout: Any = None) -> Awaitable[Any]:
        return super().request(  # type: ignore[no-any-return]
            method, url, query_params, headers, post_params, body, _preload_content,
            _request_timeout or REQUEST_TIMEOUT)


async def load_config() -> None:
    """The pod's service account in a cluster, else the kubeconfig (KUBECONFIG)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()


class Kube:
    """`KubeApi` over kubernetes_asyncio; make it after `load_config`."""

    def __init__(self) -> None:
        self._api = _BoundedApiClient()
        self._custom = client.CustomObjectsApi(self._api)
        self._batch = client.BatchV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._leases = client.CoordinationV1Api(self._api)

    @staticmethod
    async def _call(request: Any, absent: tuple[int, ...] = ()) -> Body | None:
        """The JSON of a raw call; None for an expected ``absent`` status."""
        try:
            response = await request
        except ApiException as e:  # a few calls raise even with _preload_content=False
            if e.status in absent:
                return None
            raise ApiError(e.status or 0, str(e.reason)) from None
        body = await response.read()
        if response.status in absent:
            return None
        if response.status >= 400:
            raise ApiError(response.status, body.decode(errors="replace"))
        answer: Body = json.loads(body) if body else {}
        return answer

    async def _json(self, request: Any) -> Body:
        answer = await self._call(request)
        assert answer is not None
        return answer

    async def get(self, plural: str, namespace: str, name: str) -> Body | None:
        return await self._call(self._custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _preload_content=False), absent=(404,))

    async def replace_status(self, plural: str, obj: Body) -> Body:
        meta = obj["metadata"]
        return await self._json(self._custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], obj,
            _preload_content=False))

    async def patch_metadata(self, plural: str, namespace: str, name: str,
                             metadata: Body) -> Body:
        return await self._json(self._custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
            GROUP, VERSION, namespace, plural, name, {"metadata": metadata},
            _content_type=MERGE_PATCH, _preload_content=False))

    async def delete(self, plural: str, namespace: str, name: str,
                     resource_version: str | None = None) -> None:
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version)
            if resource_version else None)
        await self._call(self._custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body=options, _preload_content=False),
            absent=(404,))

    async def list_jobs(self, namespace: str, selector: str) -> Body:
        return await self._json(self._batch.list_namespaced_job(
            namespace, label_selector=selector, _preload_content=False))

    async def create_job(self, manifest: Body) -> Body | None:
        return await self._call(self._batch.create_namespaced_job(
            manifest["metadata"]["namespace"], manifest,  # type: ignore[arg-type]
            _preload_content=False), absent=(409,))

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._call(self._batch.delete_namespaced_job(
            name, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"),
            _preload_content=False), absent=(404,))

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        listed = await self._json(self._core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False))
        return list(listed["items"])

    async def create_event(self, namespace: str, event: Body) -> None:
        await self._json(self._core.create_namespaced_event(
            namespace, event, _preload_content=False))  # type: ignore[arg-type]

    async def read_lease(self, namespace: str, name: str) -> Body | None:
        return await self._call(self._leases.read_namespaced_lease(
            name, namespace, _preload_content=False), absent=(404,))

    async def create_lease(self, namespace: str, lease: Body) -> None:
        await self._json(self._leases.create_namespaced_lease(
            namespace, lease, _preload_content=False))  # type: ignore[arg-type]

    async def replace_lease(self, namespace: str, name: str, lease: Body) -> None:
        await self._json(self._leases.replace_namespaced_lease(
            name, namespace, lease, _preload_content=False))  # type: ignore[arg-type]

    async def version(self) -> Body:
        return await self._json(client.VersionApi(self._api).get_code(_preload_content=False))

    async def close(self) -> None:
        await self._api.close()
