"""`kubectl ferry ui`'s gate (Host, Origin, token, JSON POSTs) and its HTML shell, then
the server itself on a loopback port, serving views of objects put into its store."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ferry.cli.ui.server import App, refusal, serve, shell
from ferry.cli.ui.store import Store
from tests.cli_objects import exportjob, job_spec

TOKEN = "s3cr3t-token"
PORT = 8123
HOSTILE = "<img src=x onerror=alert(1)>"


def headers(**extra: str) -> dict[str, str]:
    return {"host": f"127.0.0.1:{PORT}", **extra}


def test_the_right_token_on_the_right_host_passes() -> None:
    assert refusal("GET", headers(), {"token": TOKEN}, TOKEN, PORT) is None
    assert refusal("GET", headers(**{"x-ferry-token": TOKEN}), {}, TOKEN, PORT) is None
    assert refusal("GET", {"host": f"localhost:{PORT}"}, {"token": TOKEN}, TOKEN, PORT) is None


def test_no_token_or_a_wrong_one_is_refused() -> None:
    expected = ("forbidden: this URL needs the token `kubectl ferry ui` printed "
                "(http://127.0.0.1:PORT/?token=...)")
    assert refusal("GET", headers(), {}, TOKEN, PORT) == expected
    assert refusal("GET", headers(), {"token": TOKEN[:-1]}, TOKEN, PORT) == expected


def test_another_host_or_origin_is_refused_even_with_the_token() -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own host name."""
    assert refusal("GET", {"host": f"evil.example:{PORT}"}, {"token": TOKEN}, TOKEN, PORT) == (
        f"forbidden: Host 'evil.example:{PORT}' is not this server "
        f"(open http://127.0.0.1:{PORT}/)")
    assert refusal("POST", headers(origin="http://evil.example", **{
        "content-type": "application/json"}), {"token": TOKEN}, TOKEN, PORT) == (
        "forbidden: requests from 'http://evil.example' are not accepted")
    assert refusal("GET", headers(origin=f"http://127.0.0.1:{PORT}"), {"token": TOKEN},
                   TOKEN, PORT) is None


def test_an_action_must_be_a_json_post() -> None:
    """A plain HTML form (no preflight) cannot send JSON."""
    assert refusal("POST", headers(**{"content-type": "application/x-www-form-urlencoded"}),
                   {"token": TOKEN}, TOKEN, PORT) == (
        "forbidden: actions are JSON POSTs from the page")


def test_the_shell_escapes_what_it_interpolates() -> None:
    page = shell("job", TOKEN, {"name": HOSTILE})
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f'src="/static/app.js?token={TOKEN}"' in page


@pytest.fixture
def server() -> Iterator[tuple[App, int]]:
    store = Store()
    spec = {**job_spec(), "title": HOSTILE}
    obj = exportjob("evil", spec)
    obj["metadata"]["namespace"] = "team-a"
    store.replace("exportjobs", [obj])
    app = App(kube=None, store=store, token=TOKEN)  # type: ignore[arg-type]
    httpd = serve(app, 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, app.port
    store.stop()
    httpd.shutdown()
    httpd.server_close()


def get(port: int, path: str, **hdrs: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=hdrs)
    response = conn.getresponse()
    body = response.read() if response.getheader("Content-Type") != "text/event-stream" else \
        response.fp.readline() + response.fp.readline()
    conn.close()
    return response.status, dict(response.getheaders()), body


def test_every_path_needs_the_token(server: tuple[App, int]) -> None:
    _, port = server
    for path in ("/", "/history", "/static/app.js", "/api/view?page=jobs",
                 "/events?page=jobs", "/download?ns=a&name=b&run=1&key=k"):
        status, _, body = get(port, path)
        assert (status, body.split(b":")[0]) == (403, b"forbidden"), path
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/api/action", body=b"{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 403


def test_pages_assets_and_views_with_the_token(server: tuple[App, int]) -> None:
    _, port = server
    status, hdrs, body = get(port, f"/?token={TOKEN}")
    assert status == 200
    assert "script-src 'self'" in hdrs["Content-Security-Policy"]
    assert b'data-page="jobs"' in body
    status, hdrs, body = get(port, f"/static/style.css?token={TOKEN}")
    assert (status, hdrs["Content-Type"]) == (200, "text/css; charset=utf-8")
    status, _, body = get(port, f"/api/view?page=jobs&token={TOKEN}")
    view: dict[str, Any] = json.loads(body)
    assert [r["title"] for r in view["rows"]] == [HOSTILE]


def test_the_event_stream_sends_the_view_first(server: tuple[App, int]) -> None:
    _, port = server
    status, hdrs, body = get(port, f"/events?page=history&token={TOKEN}")
    assert (status, hdrs["Content-Type"]) == (200, "text/event-stream")
    assert body.startswith(b"data: ")
    assert json.loads(body.removeprefix(b"data: ")) == {"rows": []}


def test_a_job_that_is_not_there_is_named(server: tuple[App, int]) -> None:
    app, _ = server
    assert app.view("job", {"kind": "exportjobs", "ns": "team-a", "name": "gone"}) == {
        "error": 'exportjob "gone" not found in namespace "team-a"'}
