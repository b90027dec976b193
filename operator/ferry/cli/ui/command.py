"""`kubectl ferry ui [-n NS | -A] [--port P] [--no-browser]`: serve the pages until Ctrl-C."""

from __future__ import annotations

import argparse
import webbrowser

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
    if not args.no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        ctx.out.write("stopped\n")
    finally:
        store.stop()
        server.server_close()
    return 0
