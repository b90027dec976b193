"""Talking to the cluster the way kubectl does: kubeconfig, context, namespace.

Every call goes through :class:`Kube` so that API errors become one readable line
(``exportjob "nope" not found in namespace "team-a"``) instead of a traceback, and so
that the commands never repeat the API coordinates of the Ferry resources.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ferry.cli.errors import CliError
from ferry.constants import EXPORTJOB_PLURAL, GROUP, IMPORTJOB_PLURAL, JOBGROUP_PLURAL, VERSION

REQUEST_TIMEOUT = 30
"""Seconds per API call: a CLI must fail, not hang, when the server is unreachable."""

KIND_NAMES = {EXPORTJOB_PLURAL: "exportjob", JOBGROUP_PLURAL: "jobgroup",
              IMPORTJOB_PLURAL: "importjob"}
WATCH_SECONDS = 60
"""A watch ends (and is started again from a fresh list) after this long: `kubectl ferry
ui` keeps one per kind, and a server that drops a quiet watch is noticed within it."""

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where the user pointed the command: kubeconfig, context and namespace scope."""

    kubeconfig: str | None
    context: str | None
    namespace: str | None
    all_namespaces: bool


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the chosen context, "default" when it names none (like kubectl)."""
    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    if chosen is None:
        raise CliError(f'context "{context}" not found in the kubeconfig')
    namespace = chosen.get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


def _api_message(exc: ApiException) -> str:
    """The API server's own message (it names the object and the reason)."""
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return f"{exc.status} {exc.reason}".strip()
    message = body.get("message") if isinstance(body, dict) else None
    return str(message) if message else f"{exc.status} {exc.reason}".strip()


class Kube:
    """A connected API client plus the namespace scope of one command."""

    def __init__(self, api: Any, namespace: str, all_namespaces: bool) -> None:
        self.api = api
        self.namespace = namespace
        self.all_namespaces = all_namespaces
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    def connect(cls, target: Target) -> Kube:
        """Load the kubeconfig (``--kubeconfig``, else $KUBECONFIG, else ~/.kube/config)."""
        try:
            namespace = target.namespace or _context_namespace(target.kubeconfig, target.context)
            api = config.new_client_from_config(
                config_file=target.kubeconfig, context=target.context
            )
        except (ConfigException, OSError) as exc:
            raise CliError(f"cannot load kubeconfig: {exc}") from exc
        return cls(api, namespace, target.all_namespaces)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call; turn failures into a CliError that says ``what`` failed."""
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            raise CliError(f"{what}: {_api_message(exc)}") from exc
        except urllib3.exceptions.HTTPError as exc:
            host = self.api.configuration.host
            raise CliError(f"cannot reach the API server at {host}: {exc}") from exc

    # --- Ferry resources ------------------------------------------------------------

    def get(self, plural: str, name: str) -> dict[str, Any]:
        """One ExportJob or JobGroup in the current namespace, or a not-found CliError."""
        try:
            return dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                raise CliError(
                    f'{KIND_NAMES[plural]} "{name}" not found in namespace "{self.namespace}"'
                ) from exc
            raise CliError(f'get {KIND_NAMES[plural]} "{name}": {_api_message(exc)}') from exc

    def objects(self, plural: str, missing_ok: bool = False) -> list[dict[str, Any]]:
        """All objects in the namespace (or every namespace with -A), sorted by name;
        ``missing_ok``: none when the kind's CRD is not installed (an older chart)."""
        try:
            items, _ = self.listing(plural)
        except CliError as exc:
            cause = exc.__cause__
            if missing_ok and isinstance(cause, ApiException) and cause.status == 404:
                return []
            raise
        return sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the object (annotations or spec.suspend)."""
        return dict(
            self.call(
                f'patch {KIND_NAMES[plural]} "{name}"',
                self.custom.patch_namespaced_custom_object,
                GROUP, VERSION, self.namespace, plural, name, body,
            )
        )

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object; AlreadyExists becomes a one-line error naming it."""
        name = body["metadata"]["name"]
        try:
            return dict(
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, body,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise CliError(
                    f'{KIND_NAMES[plural]} "{name}" already exists in namespace '
                    f'"{self.namespace}"'
                ) from exc
            raise CliError(f'create {KIND_NAMES[plural]} "{name}": {_api_message(exc)}') from exc

    def scoped(self, namespace: str) -> Kube:
        """The same connection acting in ``namespace`` (the UI acts on any listed object)."""
        return Kube(self.api, namespace, False)

    def listing(self, plural: str) -> tuple[list[dict[str, Any]], str]:
        """:meth:`objects` plus the list's resourceVersion, where a watch starts."""
        if self.all_namespaces:
            result = self.call(
                f"list {plural}", self.custom.list_cluster_custom_object, GROUP, VERSION, plural
            )
        else:
            result = self.call(
                f"list {plural}", self.custom.list_namespaced_custom_object,
                GROUP, VERSION, self.namespace, plural,
            )
        items: list[dict[str, Any]] = result.get("items", [])
        return items, str(result.get("metadata", {}).get("resourceVersion") or "")

    def watch(self, plural: str, resource_version: str) -> Iterator[dict[str, Any]]:
        """Watch events (ADDED, MODIFIED, DELETED, ERROR) from ``resource_version`` on,
        for :data:`WATCH_SECONDS`; failures become a CliError like every call's."""
        args: tuple[Any, ...] = (GROUP, VERSION, plural) if self.all_namespaces else (
            GROUP, VERSION, self.namespace, plural)
        fn = (self.custom.list_cluster_custom_object if self.all_namespaces
              else self.custom.list_namespaced_custom_object)
        try:
            yield from watch.Watch().stream(
                fn, *args, resource_version=resource_version, timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            raise CliError(f"watch {plural}: {_api_message(exc)}") from exc
        except urllib3.exceptions.HTTPError as exc:
            host = self.api.configuration.host
            raise CliError(f"cannot reach the API server at {host}: {exc}") from exc

    def delete(self, plural: str, name: str) -> None:
        """Delete an object (the API server or an admission webhook may refuse)."""
        self.call(f'delete {KIND_NAMES[plural]} "{name}"',
                  self.custom.delete_namespaced_custom_object,
                  GROUP, VERSION, self.namespace, plural, name)

    # --- core objects ---------------------------------------------------------------

    def secret_data(self, name: str) -> dict[str, str]:
        """A Secret's base64 data (read with the user's own permissions)."""
        secret = self.call(
            f'read secret "{name}" in namespace "{self.namespace}"',
            self.core.read_namespaced_secret, name, self.namespace,
        )
        return dict(secret.data or {})

    def events(self, kind: str, name: str) -> list[Any]:
        """Events about one object in the namespace (what kubectl describe shows)."""
        result = self.call(
            "list events", self.core.list_namespaced_event, self.namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        return list(result.items)

    def pods(self, selector: str) -> list[Any]:
        """Pods in the namespace matching a label selector."""
        result = self.call(
            "list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return list(result.items)

    def pod_log(self, pod: str, container: str | None) -> str:
        """The log of one container of a pod, as the kubelet serves it.

        Read raw and decoded here: the kubernetes 36 client turns the text into the repr
        of its bytes, ``b'...'`` (kubernetes-client/python#2596), and parses a log that
        happens to be valid JSON.
        """
        what = f'read log of pod "{pod}"'
        response = self.call(what, self.core.read_namespaced_pod_log, pod, self.namespace,
                             container=container, _preload_content=False)
        try:
            return bytes(response.data).decode(errors="replace")
        except urllib3.exceptions.HTTPError as exc:
            raise CliError(f"{what}: {exc}") from exc
        finally:
            response.release_conn()
