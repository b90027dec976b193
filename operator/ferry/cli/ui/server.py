"""The local web server of `kubectl ferry ui`: loopback only, a token on every request.

Who may use it: whoever has the URL. The token is 32 random bytes, compared in constant
time on every request (pages, assets, the event stream, JSON, downloads and the POSTed
actions), so another local user who finds the port cannot use it. The Host header must
name the loopback address the server is bound to (a DNS-rebinding page cannot reach it)
and an Origin, when sent, must be this server's own. Every answer forbids framing and
loads scripts and styles only from the server itself.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import io
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ferry.api.exportjob import ExportJob
from ferry.api.jobgroup import JobGroup
from ferry.api.status import HistoryEntry
from ferry.cli.context import Context
from ferry.cli.errors import CliError
from ferry.cli.files import committed_files, error_records, open_folder
from ferry.cli.kube import Kube, Target
from ferry.cli.model import RunRef
from ferry.cli.runview import read_marker
from ferry.cli.ui import actions, views
from ferry.cli.ui.store import Store

HEARTBEAT_SECONDS = 5.0
"""An event stream recomputes its view at least this often (relative times, ETA)."""
MAX_BODY = 16 * 1024
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
PAGES = {"/": "jobs", "/history": "history", "/job": "job", "/run": "run"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def allowed_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def refusal(method: str, headers: dict[str, str], query: dict[str, str], token: str,
            port: int) -> str | None:
    """Why a request is refused (403), or None: the Host, the Origin, then the token
    (from ?token= or the X-Ferry-Token header). Pure, so each rule is unit-tested."""
    host = headers.get("host", "")
    if host not in allowed_hosts(port):
        return f"forbidden: Host {host!r} is not this server (open http://127.0.0.1:{port}/)"
    origin = headers.get("origin")
    if origin is not None and origin.removeprefix("http://") not in allowed_hosts(port):
        return f"forbidden: requests from {origin!r} are not accepted"
    given = query.get("token") or headers.get("x-ferry-token") or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return ("forbidden: this URL needs the token `kubectl ferry ui` printed "
                "(http://127.0.0.1:PORT/?token=...)")
    if method == "POST" and not headers.get("content-type", "").startswith("application/json"):
        return "forbidden: actions are JSON POSTs from the page"
    return None


def shell(page: str, token: str, params: dict[str, str]) -> str:
    """The HTML of a page before its script fills it: everything interpolated is escaped."""
    t = html.escape(token, quote=True)
    data = html.escape(json.dumps(params), quote=True)
    nav = "".join(
        f'<a href="{href}?token={t}"{cls}>{label}</a>'
        for href, label, cls in (
            ("/", "Jobs", ' class="here"' if page == "jobs" else ""),
            ("/history", "History", ' class="here"' if page == "history" else ""),
        ))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Ferry</title>
<link rel="stylesheet" href="/static/style.css?token={t}">
<script defer src="/static/app.js?token={t}"></script>
</head>
<body data-page="{html.escape(page)}" data-token="{t}" data-params="{data}">
<header><strong>Ferry</strong><nav>{nav}</nav>
<span id="live" class="live" title="live updates">connecting</span></header>
<div id="flash" role="alert" hidden></div>
<main id="main"></main>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>
<div id="confirm-extra"></div>
<menu><button value="cancel" id="confirm-cancel">Cancel</button>
<button value="ok" id="confirm-ok" class="primary">Confirm</button></menu></form></dialog>
</body></html>
"""


@dataclass
class App:
    """The server's state: the connection, the watched objects, the token."""

    kube: Kube
    store: Store
    token: str
    port: int = 0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    markers: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- views -------------------------------------------------------------------------

    def view(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        """The JSON of one page, computed from the watched objects."""
        _, objects, errors = self.store.snapshot()
        now = self.clock()
        if page == "jobs":
            return views.jobs_page(objects, errors, now)
        if page == "history":
            return views.history_page(objects)
        plural = params.get("kind", "exportjobs")
        if plural not in views.KIND_BY_PLURAL:
            return {"error": f"unknown kind {plural!r}"}
        namespace, name = params.get("ns", ""), params.get("name", "")
        raw = self.store.get(plural, namespace, name)
        if raw is None:
            what = views.KIND_BY_PLURAL[plural].name.lower()
            return {"error": f'{what} "{name}" not found in namespace "{namespace}"'}
        if page == "job":
            events, problem = self.events(namespace, views.KIND_BY_PLURAL[plural].name, name)
            return views.job_page(plural, raw, events, problem, now)
        return self.run_view(plural, raw, params.get("run", ""), now)

    def events(self, namespace: str, kind: str, name: str) -> tuple[list[dict[str, Any]], str]:
        try:
            found = self.kube.scoped(namespace).events(kind, name)
        except CliError as exc:
            return [], str(exc)
        rows = [views.event_row(e) for e in found]
        return sorted(rows, key=lambda r: r["lastSeen"] or "", reverse=True), ""

    def run_view(self, plural: str, raw: dict[str, Any], number: str,
                 now: dt.datetime) -> dict[str, Any]:
        job = views.parse(plural, raw)
        if isinstance(job, str):
            return {"error": f"cannot read the job: {job}"}
        if not number.isdigit():
            return {"error": f"run {number!r} is not a run number"}
        assert not isinstance(job, JobGroup)
        run = views.find_run(job, int(number))
        if run is None:
            return {"error": f"run {job.metadata.name}.{number} is not in the history of "
                             f"{views.KIND_BY_PLURAL[plural].name.lower()} "
                             f'"{job.metadata.name}"'}
        marker, note = None, ""
        if isinstance(run, HistoryEntry):
            if isinstance(job, ExportJob):
                marker, note = self.marker(job, run)
            else:
                note = "the batches of a finished ImportJob run are in its audit log"
        return views.run_page(plural, raw, run, marker, note, now)

    def marker(self, job: ExportJob, run: HistoryEntry) -> tuple[dict[str, Any] | None, str]:
        """A finished run's marker, read once (a sealed run's marker never changes)."""
        cache_key = (job.metadata.namespace or "", job.metadata.uid or "", run.id)
        with self.lock:
            if cache_key in self.markers:
                return self.markers[cache_key], ""
        marker, note = read_marker(self.context(job.metadata.namespace or ""), job,
                                   RunRef(run.id, run.folder, run))
        if marker is not None:
            with self.lock:
                self.markers[cache_key] = marker
        return marker, note

    def context(self, namespace: str) -> Context:
        """What the plugin's functions take, on this server's connection."""
        ctx = Context(target=Target(None, None, namespace, False), now=self.clock(),
                      out=io.StringIO(), err=io.StringIO())
        ctx.kube = self.kube.scoped(namespace)
        return ctx

    def run_files(self, params: dict[str, str]) -> dict[str, Any]:
        """A run's committed files (per batch) and its error report, read from the bucket."""
        job, ref = self.job_and_run(params)
        ctx = self.context(job.metadata.namespace or "")
        folder = open_folder(ctx, job, ref)
        result: dict[str, Any] = {"files": [], "errors": [], "filesNote": "", "errorsNote": ""}
        try:
            result["files"] = [{"key": f.key, "name": PurePosixPath(f.key).name,
                                "size": f.size, "batch": f.batch}
                               for f in committed_files(folder, ref, None)]
        except CliError as exc:
            result["filesNote"] = str(exc)
        try:
            result["errors"] = [{"time": str(r.get("time") or ""), "batch": r.get("batch"),
                                 "attempt": r.get("attempt"), "kind": str(r.get("kind") or ""),
                                 "reason": str(r.get("reason") or "")}
                                for r in error_records(folder)]
        except CliError as exc:
            result["errorsNote"] = str(exc)
        return result

    def job_and_run(self, params: dict[str, str]) -> tuple[ExportJob, RunRef]:
        namespace, name, number = params.get("ns", ""), params.get("name", ""), params.get(
            "run", "")
        raw = self.store.get("exportjobs", namespace, name)
        job = views.parse("exportjobs", raw) if raw else None
        if not isinstance(job, ExportJob):
            raise CliError(f'exportjob "{name}" not found in namespace "{namespace}"')
        run = views.find_run(job, int(number)) if number.isdigit() else None
        if run is None:
            raise CliError(f"run {name}.{number} is not in the history of exportjob {name!r}")
        return job, RunRef(run.id, run.folder, run)


class Handler(BaseHTTPRequestHandler):
    """One request; ``app`` is set on the subclass :func:`serve` makes."""

    app: App
    server_version = "ferry-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the default line would print the URL, and so the token, to stderr."""

    def parts(self) -> tuple[str, dict[str, str]]:
        split = urlsplit(self.path)
        return split.path, {k: v[0] for k, v in parse_qs(split.query).items()}

    def send(self, status: int, body: bytes, content_type: str,
             extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, document: Any, status: int = 200) -> None:
        self.send(status, json.dumps(document).encode(), "application/json")

    def checked(self, method: str) -> tuple[str, dict[str, str]] | None:
        path, query = self.parts()
        headers = {k.lower(): v for k, v in self.headers.items()}
        problem = refusal(method, headers, query, self.app.token, self.app.port)
        if problem is not None:
            self.send(HTTPStatus.FORBIDDEN, (problem + "\n").encode(), "text/plain; charset=utf-8")
            return None
        return path, query

    def do_GET(self) -> None:
        checked = self.checked("GET")
        if checked is None:
            return
        path, query = checked
        if path in PAGES:
            params = {k: v for k, v in query.items() if k != "token"}
            self.send(200, shell(PAGES[path], self.app.token, params).encode(),
                      "text/html; charset=utf-8")
        elif path.startswith("/static/") and path.removeprefix("/static/") in STATIC:
            name = path.removeprefix("/static/")
            body = resources.files("ferry.cli.ui").joinpath("static", name).read_bytes()
            self.send(200, body, f"{STATIC[name]}; charset=utf-8")
        elif path == "/api/view":
            self.send_json(self.app.view(query.get("page", "jobs"), query))
        elif path == "/api/files":
            try:
                self.send_json(self.app.run_files(query))
            except CliError as exc:
                self.send_json({"error": f"error: {exc}"}, 404)
        elif path == "/download":
            self.download(query)
        elif path == "/events":
            self.stream(query.get("page", "jobs"), query)
        else:
            self.send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        checked = self.checked("POST")
        if checked is None:
            return
        path, _ = checked
        if path != "/api/action":
            self.send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_json({"ok": False, "message": "error: request too large"}, 413)
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            outcome = actions.perform(
                self.app.kube, str(body["kind"]), str(body["namespace"]), str(body["name"]),
                str(body["action"]), body.get("new"), body.get("title"))
        except (ValueError, KeyError, TypeError) as exc:
            self.send_json({"ok": False, "message": f"error: bad action request: {exc}"}, 400)
            return
        self.send_json({"ok": outcome.ok, "message": outcome.message},
                       200 if outcome.ok else 409)

    def download(self, query: dict[str, str]) -> None:
        """One committed file of a run, streamed from the bucket (only manifest-listed
        keys: the page cannot be made to read anything else with the job's credentials)."""
        try:
            job, ref = self.app.job_and_run(query)
            folder = open_folder(self.app.context(job.metadata.namespace or ""), job, ref)
            wanted = next((f for f in committed_files(folder, ref, None)
                           if f.key == query.get("key")), None)
            if wanted is None:
                raise CliError(f"{query.get('key')!r} is not a committed file of run {ref.id}")
            chunks = folder.bucket.stream(wanted.key)
            first = next(chunks, b"")
        except CliError as exc:
            self.send(404, f"error: {exc}\n".encode(), "text/plain; charset=utf-8")
            return
        name = PurePosixPath(wanted.key).name.replace('"', "")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(wanted.size))
        self.send_header("Content-Disposition", f'attachment; filename="{name}"')
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(first)
        for chunk in chunks:
            self.wfile.write(chunk)

    def stream(self, page: str, params: dict[str, str]) -> None:
        """Server-Sent Events: the page's view whenever it changes."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        version, last = -1, ""
        try:
            while not self.app.store.stopped.is_set():
                document = json.dumps(self.app.view(page, params))
                if document != last:
                    self.wfile.write(f"data: {document}\n\n".encode())
                    last = document
                else:
                    self.wfile.write(b": still here\n\n")
                self.wfile.flush()
                version = self.app.store.wait(version, HEARTBEAT_SECONDS)
        except (BrokenPipeError, ConnectionResetError):
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(app: App, port: int) -> Server:
    """Bind 127.0.0.1:``port`` (0: any free port) and return the server (not started)."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = Server(("127.0.0.1", port), handler)
    app.port = server.server_address[1]
    return server
