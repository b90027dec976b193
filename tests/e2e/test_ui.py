"""`kubectl ferry ui` in a real browser: Debian's Chromium driven by Playwright, against
the local cluster with the real operator and worker pods.

What a user sees: the Jobs page's bar growing while a run goes (no reload) and its ETA on
hover; a confirmed Run now starting a run; Delete refused while the run is in progress;
Stop cancelling it; the History page's filters finding a failed run; a run's batches
filtered by status with a download and the error report; a hostile title shown as text;
a user whom RBAC refuses reading which verb on which resource; no token, no page.

With FERRY_UI_SCREENSHOTS=docs/ui the screenshots of docs/ui.md are written there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from ferry.constants import ANNOTATION_RUN_REQUESTED_AT
from tests.fixtures.services import S3Server

from .operator_fixtures import OperatorProcess, Wiring, export_job, get, request
from .support import Kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "<img src=x onerror=alert(1)>"
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
ROWS = 3000
WINDOW = {"fixed": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T02:00:00Z"}}
SHOTS = Path(os.environ.get("FERRY_UI_SCREENSHOTS") or "") if os.environ.get(
    "FERRY_UI_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def tables(pg_db: str) -> str:
    """`interactions`, one row a minute; `throttled`: the same at ~30 ms a row (COUNT(*)
    stays instant, so the run knows its total and an ETA); `half_broken`: rows from
    2026-11-01 01:00 on fail; `all_broken`: every row fails."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE interactions (id bigint PRIMARY KEY, "
                     "created_at timestamptz NOT NULL)")
        with conn.cursor().copy("COPY interactions FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row((i, START + dt.timedelta(minutes=i)))
        conn.execute("CREATE FUNCTION slow_text(i bigint) RETURNS text STABLE LANGUAGE plpgsql "
                     "AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN repeat(i::text, 20); END $$")
        conn.execute("CREATE VIEW throttled AS SELECT id, created_at, slow_text(id) AS payload "
                     "FROM interactions")
        conn.execute("CREATE VIEW half_broken AS SELECT id, created_at, CASE WHEN created_at "
                     ">= timestamptz '2026-11-01 01:00Z' THEN (1 / (id - id))::text END AS note "
                     "FROM interactions WHERE id < 120")
        conn.execute("CREATE VIEW all_broken AS SELECT id, created_at, (1 / (id - id))::text "
                     "AS note FROM interactions")
    return pg_db


@pytest.fixture(scope="module")
def jobs(kubectl: Kubectl, operator: OperatorProcess, wiring: Wiring, s3: S3Server,
         tables: str) -> Wiring:
    """moving (3 batches of 1000 slow rows), evil (the hostile title, suspended), partial
    (PartiallySucceeded), failing (Failed) and a JobGroup chain; partial and failing run
    at once, so they have ended by the time the History test looks."""
    ns = wiring.namespace
    moving = export_job("moving", wiring, s3, timeframe=WINDOW,
                        batching={"batches": 3, "parallelism": 3})
    moving["spec"]["source"]["table"] = "throttled"
    moving["spec"]["title"] = "Contact history, slow"
    evil = export_job("evil", wiring, s3, suspend=True)
    evil["spec"]["title"] = HOSTILE
    partial = export_job("partial", wiring, s3, timeframe={"fixed": {
                             "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T02:00:00Z"}},
                         batching={"batches": 2, "retriesPerBatch": 0})
    partial["spec"]["source"]["table"] = "half_broken"
    failing = export_job("failing", wiring, s3, timeframe=WINDOW,
                         batching={"batches": 1, "retriesPerBatch": 0})
    failing["spec"]["source"]["table"] = "all_broken"
    chain = {"apiVersion": "ferry.dev/v1alpha1", "kind": "JobGroup",
             "metadata": {"name": "chain"},
             "spec": {"title": "Evening chain", "members": ["partial", "failing"]}}
    kubectl("apply", "-n", ns, "-f", "-",
            input=yaml.safe_dump_all([moving, evil, partial, failing, chain]))
    for name in ("partial", "failing"):
        request(kubectl, ns, name, ANNOTATION_RUN_REQUESTED_AT)
    return wiring


def start_ui(kubeconfig: str, namespace: str) -> tuple[subprocess.Popen[str], str]:
    """`kubectl ferry ui --no-browser` as a user runs it; returns it and the URL printed."""
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "kubectl-ferry"), "-n", namespace, "ui", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig})
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith(f'Ferry UI for namespace "{namespace}" at http://127.0.0.1:'), (
        line + (process.stderr.read() if process.poll() is not None and process.stderr else ""))
    return process, line.split(" at ", 1)[1].strip()


def stop_ui(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def ui(kubeconfig: str, jobs: Wiring) -> Iterator[str]:
    process, url = start_ui(kubeconfig, jobs.namespace)
    yield url
    stop_ui(process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's Chromium by its path, headless, with a fresh profile."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=FLAGS, viewport={"width": 1500, "height": 900})
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    tab = browser.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield tab
    assert dialogs == [], "a script opened a JavaScript dialog (alert): escaping failed"
    tab.close()


def at(url: str, path: str, **params: str) -> str:
    base, token = url.split("/?token=")
    query = "&".join(f"{k}={v}" for k, v in {**params, "token": token}.items())
    return f"{base}{path}?{query}"


def shot(page: Page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def row(page: Page, name: str) -> Any:
    return page.locator(f'#rows tbody tr[data-name="{name}"]')


def confirm(page: Page, action: str, name: str) -> str:
    """Click an action's button in the job's row, confirm, return the message shown."""
    row(page, name).locator(f'button[data-action="{action}"]').click()
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm-ok").click()
    flash = page.locator("#flash")
    expect(flash).to_be_visible()
    page.wait_for_function("document.getElementById('flash').textContent.length > 0")
    return str(flash.inner_text())


def status_of(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return get(kubectl, ns, f"exportjob/{name}").get("status") or {}


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read(200).decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_without_the_token_nothing_is_served(ui: str, page: Page) -> None:
    base = ui.split("/?token=", maxsplit=1)[0]
    forbidden = ("forbidden: this URL needs the token `kubectl ferry ui` printed "
                 "(http://127.0.0.1:PORT/?token=...)\n")
    for path in ("/", "/history", "/api/view?page=jobs", "/events?page=jobs",
                 "/static/app.js", "/?token=wrong"):
        assert fetch(base + path) == (403, forbidden), path
    action = json.dumps({"kind": "exportjobs", "namespace": "x", "name": "evil",
                         "action": "delete"}).encode()
    assert fetch(base + "/api/action", "POST", {"Content-Type": "application/json"},
                 action) == (403, forbidden)
    page.goto(base + "/")
    expect(page.locator("body")).to_contain_text("forbidden: this URL needs the token")


def test_a_hostile_title_is_shown_as_text(ui: str, page: Page) -> None:
    page.goto(ui)
    expect(row(page, "evil")).to_be_visible()
    expect(row(page, "evil").locator("td").first).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0
    page.goto(at(ui, "/job", kind="exportjobs", ns="x", name="<b>bold</b>"))
    expect(page.locator("main")).to_have_text(
        'exportjob "<b>bold</b>" not found in namespace "x"')


def test_run_now_moves_the_bar_without_a_reload_and_hover_shows_the_eta(
        ui: str, page: Page, kubectl: Kubectl, jobs: Wiring) -> None:
    page.goto(ui)
    expect(row(page, "moving")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    message = confirm(page, "run", "moving")
    assert message.startswith("exportjob.ferry.dev/moving run requested "
                              "(ferry.dev/run-requested-at="), message
    fill = row(page, "moving").locator(".bar .fill")
    expect(fill).to_be_visible(timeout=90_000)

    def width() -> float:
        return float(fill.evaluate("e => parseFloat(e.style.width)"))

    first = wait_until(lambda: width() or None, timeout=90, what="a bar above 0%")
    later = wait_until(lambda: (w := width()) > first and w, timeout=60,
                       what=f"the bar to grow past {first}%")
    assert later > first
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    status = status_of(kubectl, jobs.namespace, "moving")
    assert status["currentRun"]["id"] == "moving.1"
    assert status["currentRun"]["trigger"] == "manual"

    bar = row(page, "moving").locator(".bar")
    tip = bar.locator(".tip")
    expect(tip).to_be_hidden()
    wait_until(lambda: status_of(kubectl, jobs.namespace, "moving")["currentRun"].get(
        "etaSeconds") is not None, timeout=60, what="an ETA in status")
    expect(tip).to_contain_text(" left, ends about 20", timeout=15_000)
    bar.hover()
    expect(tip).to_be_visible()
    shot(page, "jobs")


def test_delete_is_refused_while_the_run_is_in_progress(ui: str, page: Page,
                                                         jobs: Wiring) -> None:
    page.goto(ui)
    expect(row(page, "moving").locator(".bar")).to_be_visible()
    message = confirm(page, "delete", "moving")
    assert message == (
        f'error: exportjob "moving" has run moving.1 in progress: stop it first with '
        f'"kubectl ferry stop moving -n {jobs.namespace}" (or annotate '
        "ferry.dev/stop-requested-at), then delete")


def test_stop_with_its_confirmation_cancels_the_run(ui: str, page: Page, kubectl: Kubectl,
                                                    jobs: Wiring) -> None:
    page.goto(ui)
    expect(row(page, "moving").locator(".bar")).to_be_visible()
    message = confirm(page, "stop", "moving")
    assert message.startswith("exportjob.ferry.dev/moving stop of run moving.1 requested"), message
    expect(row(page, "moving").locator(".phase")).to_have_text("Canceled", timeout=90_000)
    assert status_of(kubectl, jobs.namespace, "moving")["lastRun"]["phase"] == "Canceled"


def test_clone_makes_a_suspended_copy(ui: str, page: Page, kubectl: Kubectl,
                                      jobs: Wiring) -> None:
    page.goto(ui)
    row(page, "evil").locator('button[data-action="clone"]').click()
    page.locator("#clone-name").fill("evil-copy")
    page.locator("#confirm-ok").click()
    expect(page.locator("#flash")).to_have_text(
        "exportjob.ferry.dev/evil-copy created from evil (suspended)\n"
        "hint: review it with `kubectl ferry describe evil-copy`, then start its schedule "
        "with `kubectl ferry resume evil-copy`".strip())
    expect(row(page, "evil-copy")).to_be_visible()
    assert get(kubectl, jobs.namespace, "exportjob/evil-copy")["spec"]["suspend"] is True


def test_the_jobs_filters(ui: str, page: Page, kubectl: Kubectl, jobs: Wiring) -> None:
    wait_until(lambda: status_of(kubectl, jobs.namespace, "failing").get("lastRun"),
               timeout=180, what="failing's run to end")
    page.goto(ui)
    expect(row(page, "failing").locator(".phase")).to_have_text("Failed", timeout=15_000)
    page.locator("#f-phase").select_option("Failed")
    expect(page.locator("#rows tbody tr")).to_have_count(1, timeout=15_000)
    expect(row(page, "failing")).to_be_visible()
    page.locator("#f-phase").select_option("")
    page.locator("#f-kind").select_option("Group")
    expect(page.locator("#rows tbody tr")).to_have_count(1, timeout=15_000)
    expect(row(page, "chain")).to_contain_text("Evening chain")
    page.locator("#f-kind").select_option("")
    page.locator("#f-text").fill("slow")
    expect(page.locator("#rows tbody tr")).to_have_count(1, timeout=15_000)
    expect(row(page, "moving")).to_be_visible()


def test_the_history_filter_finds_the_failed_run(ui: str, page: Page, kubectl: Kubectl,
                                                 jobs: Wiring) -> None:
    wait_until(lambda: status_of(kubectl, jobs.namespace, "partial").get("lastRun"),
               timeout=180, what="partial's run to end")
    page.goto(at(ui, "/history"))
    runs = page.locator("#rows tbody tr")
    expect(page.locator('#rows tr[data-run="partial.1"]')).to_contain_text("PartiallySucceeded")
    page.locator("#f-phase").select_option("Failed")
    expect(runs).to_have_count(1)
    expect(page.locator('#rows tr[data-run="failing.1"]')).to_contain_text("manual")
    today = dt.datetime.now(dt.UTC).date()
    page.locator("#f-since").fill(today.isoformat())
    expect(runs).to_have_count(1)
    page.locator("#f-since").fill((today + dt.timedelta(days=1)).isoformat())
    expect(page.locator("#rows")).to_have_text("No runs match.")
    page.locator("#f-since").fill("")
    page.locator("#f-phase").select_option("")
    shot(page, "history")


def test_a_run_page_filters_batches_and_offers_downloads(ui: str, page: Page,
                                                         kubectl: Kubectl, jobs: Wiring) -> None:
    wait_until(lambda: status_of(kubectl, jobs.namespace, "partial").get("lastRun", {}).get(
        "runMarker"), timeout=120, what="partial.1 to be sealed")
    page.goto(at(ui, "/run", kind="exportjobs", ns=jobs.namespace, name="partial", run="1"))
    expect(page.locator("#run-phase")).to_have_text("PartiallySucceeded")
    batches = page.locator("#batches tbody tr")
    expect(batches).to_have_count(2, timeout=30_000)
    page.locator("#f-batch").select_option("failed")
    expect(batches).to_have_count(1)
    expect(batches.first.locator("td").first).to_have_text("1")
    page.locator("#f-batch").select_option("completed")
    expect(batches).to_have_count(1)
    expect(batches.first).to_contain_text("60/60")
    download = page.locator("#files a", has_text="Download")
    expect(download).to_have_count(1)
    expect(page.locator("#errors-report")).to_contain_text("division by zero")
    with page.expect_download() as info:
        download.click()
    saved = info.value.path()
    lines = Path(saved).read_text().splitlines()
    assert lines[0].startswith("id,") and len(lines) == 61, "a header and batch 0's 60 rows"
    page.locator("#f-batch").select_option("all")
    expect(batches).to_have_count(2)
    shot(page, "run")


def test_a_job_page_shows_conditions_runs_and_events(ui: str, page: Page,
                                                     jobs: Wiring) -> None:
    page.goto(at(ui, "/job", kind="exportjobs", ns=jobs.namespace, name="failing"))
    expect(page.locator("#job-title")).to_have_text("ExportJob failing")
    expect(page.locator("#job-summary")).to_contain_text("postgres table all_broken")
    expect(page.locator("#conditions")).to_contain_text("Ready")
    expect(page.locator("#runs")).to_contain_text("failing.1")
    expect(page.locator("#events tbody tr").first).to_be_visible(timeout=30_000)
    shot(page, "job")


@pytest.fixture(scope="module")
def viewer_kubeconfig(kubectl: Kubectl, jobs: Wiring, tmp_path_factory: pytest.TempPathFactory
                      ) -> str:
    """A user who may read Ferry objects and Events in the namespace, and change nothing."""
    ns = jobs.namespace
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "ferry-viewer"},
            "rules": [{"apiGroups": ["ferry.dev"],
                       "resources": ["exportjobs", "jobgroups", "importjobs"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "ferry-viewer"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "ferry-viewer"},
               "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]}
    kubectl("create", "serviceaccount", "viewer", "-n", ns)
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([role, binding]))
    token = kubectl("create", "token", "viewer", "-n", ns).stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster_entry = admin["clusters"][0]
    path = tmp_path_factory.mktemp("viewer") / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster_entry],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {"cluster": cluster_entry["name"],
                                                    "user": "viewer", "namespace": ns}}],
        "current-context": "viewer"}))
    return str(path)


def test_a_user_rbac_refuses_reads_the_verb_and_resource(viewer_kubeconfig: str, page: Page,
                                                         kubectl: Kubectl, jobs: Wiring) -> None:
    ns = jobs.namespace
    process, url = start_ui(viewer_kubeconfig, ns)
    try:
        page.goto(url)
        expect(row(page, "evil")).to_be_visible(timeout=30_000)
        message = confirm(page, "resume", "evil")
        assert message == (
            f'error: patch exportjob "evil": exportjobs.ferry.dev "evil" is forbidden: User '
            f'"system:serviceaccount:{ns}:viewer" cannot patch resource "exportjobs" in API '
            f'group "ferry.dev" in the namespace "{ns}"')
        assert get(kubectl, ns, "exportjob/evil")["spec"]["suspend"] is True
    finally:
        stop_ui(process)
