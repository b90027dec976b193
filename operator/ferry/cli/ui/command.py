"""`kubectl ferry ui [-n NS | -A] [--port P] [--no-browser]`: serve the pages until Ctrl-C."""

from __future__ import annotations

import argparse
import html
import os
import tempfile
import webbrowser
from pathlib import Path

from ferry.cli.context import Context
from ferry.cli.ui import store as watched
from ferry.cli.ui.server import App, new_token, serve
from ferry.cli.ui.views import KINDS


def cmd_ui(ctx: Context, args: argparse.Namespace) -> int:
    """Watch every Ferry kind in scope with the user's kubeconfig and serve the pages on
    127.0.0.1; the URL printed carries the token every request needs."""
    store = watched.Store()
    app = App(ctx.kube, store, new_token())
    server = serve(app, args.port)
    watched.start(ctx.kube, [k.plural for k in KINDS], store)
    scope = "all namespaces" if ctx.kube.all_namespaces else f'namespace "{ctx.kube.namespace}"'
    url = f"http://127.0.0.1:{app.port}/?token={app.token}"
    ctx.out.write(f"Ferry UI for {scope} at {url}\n(only this URL works: it holds the token; "
                  "Ctrl-C stops the server)\n")
    ctx.out.flush()
    launcher = None if args.no_browser else open_browser(url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        ctx.out.write("stopped\n")
    finally:
        store.stop()
        server.server_close()
        if launcher is not None:
            launcher.unlink(missing_ok=True)
    return 0


def open_browser(url: str) -> Path:
    """Open the page through a file only the user can read that redirects to ``url``: a
    browser started with the URL itself would show the token to every local user in its
    command line (``ps``). Returns the file, removed when the server stops."""
    fd, name = tempfile.mkstemp(prefix="ferry-ui-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w") as out:
        target = html.escape(url, quote=True)
        out.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
                  f'<a href="{target}">Ferry</a>\n')
    webbrowser.open(Path(name).as_uri())
    return Path(name)
