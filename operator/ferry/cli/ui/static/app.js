// kubectl ferry ui: renders the JSON views the server streams (Server-Sent Events).
// Every value from a spec or status is set with textContent, never as HTML.
"use strict";

const body = document.body;
const TOKEN = body.dataset.token;
const PAGE = body.dataset.page;
const PARAMS = JSON.parse(body.dataset.params || "{}");
const main = document.getElementById("main");
const DASH = "-";

function url(path, params) {
  const q = new URLSearchParams({ ...params, token: TOKEN });
  return `${path}?${q.toString()}`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "onclick") node.addEventListener("click", v);
    else if (k === "onchange") node.addEventListener("input", v);
    else node.setAttribute(k, String(v));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(value) {
  return value === null || value === undefined || value === "" ? DASH : String(value);
}

function table(headers, rows, rowClass) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  const tbody = el("tbody");
  for (const row of rows) {
    const tr = el("tr", rowClass ? { class: rowClass(row) } : {});
    for (const cell of row.cells) tr.append(el("td", {}, cell instanceof Node ? cell : show(cell)));
    tbody.append(tr);
  }
  return el("table", {}, el("thead", {}, head), tbody);
}

function flash(ok, message) {
  const box = document.getElementById("flash");
  box.hidden = false;
  box.className = ok ? "ok" : "refused";
  box.textContent = message;
}

function link(path, params, text) {
  return el("a", { href: url(path, params), text });
}

function jobLink(row) {
  return link("/job", { kind: row.plural, ns: row.namespace, name: row.name || row.job },
    row.title || row.name);
}

function bar(progress) {
  if (!progress) return null;
  const percent = progress.percent === null ? 0 : progress.percent;
  const fill = el("span", { class: "fill" });
  fill.style.width = `${percent}%`;
  return el("span", { class: "bar", tabindex: "0", "aria-label": progress.hover },
    el("span", { class: "track" }, fill),
    el("span", { class: "bar-text", text: progress.text }),
    el("span", { class: "tip", role: "tooltip", text: progress.hover }));
}

const LABELS = { run: "Run now", stop: "Stop", retry: "Retry", suspend: "Suspend",
  resume: "Resume", clone: "Clone", delete: "Delete" };

function confirmText(action, row) {
  const what = `${row.kind} "${row.name}" in namespace "${row.namespace}"`;
  return {
    run: `Run ${what} now? Its schedule is unchanged.`,
    stop: `Stop the run in progress of ${what}? Its pods are terminated and the run ends Canceled.`,
    retry: `Retry the failed batches of the latest run of ${what}?`,
    suspend: `Suspend ${what}? No new scheduled runs start.`,
    resume: `Resume ${what}? Its schedule starts runs again.`,
    clone: `Clone ${what}? The copy starts suspended.`,
    delete: `Delete ${what}? Files already exported stay in the bucket.`,
  }[action];
}

function act(action, row) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = confirmText(action, row);
  const extra = document.getElementById("confirm-extra");
  extra.replaceChildren();
  if (action === "clone") {
    extra.append(el("label", {}, "Name of the copy ",
      el("input", { id: "clone-name", required: true, value: `${row.name}-copy` })));
    extra.append(el("label", {}, "Title ", el("input", { id: "clone-title", value: row.title })));
  }
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    const request = { kind: row.plural, namespace: row.namespace, name: row.name, action };
    if (action === "clone") {
      request.new = document.getElementById("clone-name").value;
      request.title = document.getElementById("clone-title").value;
    }
    const answer = await fetch(url("/api/action", {}), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    let result;
    try { result = await answer.json(); } catch (e) { result = { ok: false, message: await answer.text() }; }
    flash(result.ok, result.message);
  };
  dialog.showModal();
}

function actionButtons(row) {
  if (!row.actions || row.actions.length === 0) return el("span", { class: "muted", text: "no actions yet" });
  return el("span", { class: "actions" }, ...row.actions.map((a) =>
    el("button", { type: "button", "data-action": a, onclick: () => act(a, row), text: LABELS[a] })));
}

// --- Jobs ----------------------------------------------------------------------------------

const filters = { kind: "", source: "", records: "", phase: "", text: "", since: "" };

function options(id, values, label) {
  const select = document.getElementById(id);
  const current = select.value;
  select.replaceChildren(el("option", { value: "", text: label }),
    ...[...new Set(values)].sort().map((v) => el("option", { value: v, text: v })));
  select.value = [...select.options].some((o) => o.value === current) ? current : "";
}

function filterBar(ids) {
  const bar = el("div", { class: "filters" });
  for (const [id, label] of ids) {
    const key = id.replace("f-", "");
    if (key === "text") {
      bar.append(el("input", { id, type: "search", placeholder: label, "aria-label": label,
        onchange: (e) => { filters.text = e.target.value.toLowerCase(); render(); } }));
    } else if (key === "since") {
      bar.append(el("label", {}, label, el("input", { id, type: "date",
        onchange: (e) => { filters.since = e.target.value; render(); } })));
    } else {
      const select = el("select", { id, "aria-label": label });
      select.addEventListener("change", (e) => { filters[key] = e.target.value; render(); });
      bar.append(select);
    }
  }
  return bar;
}

function matches(row, fields) {
  if (filters.text && !fields.some((f) => String(row[f] || "").toLowerCase().includes(filters.text))) return false;
  return true;
}

function layoutJobs() {
  main.replaceChildren(el("h1", { text: "Jobs" }),
    filterBar([["f-kind", "All kinds"], ["f-source", "All sources"], ["f-records", "All types"],
      ["f-phase", "All statuses"], ["f-text", "Search title or name"]]),
    el("div", { id: "errors" }), el("div", { id: "rows" }));
}

function renderJobs(view) {
  options("f-kind", view.rows.map((r) => r.type), "All kinds");
  options("f-source", view.rows.map((r) => r.source), "All sources");
  options("f-records", view.rows.map((r) => r.records), "All types");
  options("f-phase", view.rows.map((r) => r.phase), "All statuses");
  document.getElementById("errors").replaceChildren(...view.errors.map((e) =>
    el("p", { class: "refused", text: e })));
  const rows = view.rows.filter((r) => (!filters.kind || r.type === filters.kind)
    && (!filters.source || r.source === filters.source)
    && (!filters.records || r.records === filters.records)
    && (!filters.phase || r.phase === filters.phase)
    && matches(r, ["title", "name", "namespace"]));
  document.getElementById("rows").replaceChildren(rows.length === 0
    ? el("p", { class: "muted", text: "No jobs match." })
    : table(["Title", "Namespace", "Name", "Kind", "Source", "Type", "Schedule", "Latest status",
      "Last run", "Next run", "Ready", "Actions"], rows.map((r) => ({ data: r, cells: [
      jobLink(r), r.namespace, r.name, r.type, r.source, r.records, r.schedule,
      el("span", { class: "status" }, el("span", { class: `phase ${r.phase}`, text: r.phase }), bar(r.progress)),
      r.lastRun, r.nextRun, el("span", { title: r.readyMessage, text: r.ready }), actionButtons(r)] }))));
  for (const [i, tr] of [...document.querySelectorAll("#rows tbody tr")].entries()) {
    tr.dataset.name = rows[i].name;
    tr.dataset.kind = rows[i].kind;
  }
}

// --- History -------------------------------------------------------------------------------

function layoutHistory() {
  main.replaceChildren(el("h1", { text: "History" }),
    filterBar([["f-phase", "All results"], ["f-since", "Started on or after "],
      ["f-text", "Search run, job or title"]]),
    el("div", { id: "rows" }));
}

function runLink(r) {
  return r.hasPage ? link("/run", { kind: r.plural, ns: r.namespace, name: r.job, run: r.number }, r.id)
    : el("span", { text: r.id });
}

function renderHistory(view) {
  options("f-phase", view.rows.map((r) => r.phase), "All results");
  const rows = view.rows.filter((r) => (!filters.phase || r.phase === filters.phase)
    && (!filters.since || (r.startedAt && r.startedAt.slice(0, 10) >= filters.since))
    && matches(r, ["id", "job", "title", "namespace"]));
  document.getElementById("rows").replaceChildren(rows.length === 0
    ? el("p", { class: "muted", text: "No runs match." })
    : table(["Run", "Job", "Namespace", "Trigger", "Initiated by", "Start", "Duration",
      "Result", "Records", "Files"], rows.map((r) => ({ cells: [runLink(r),
      link("/job", { kind: r.plural, ns: r.namespace, name: r.job }, r.title), r.namespace,
      r.trigger, r.startedBy, r.startedAt, r.duration,
      el("span", { class: `phase ${r.phase}`, text: r.phase }),
      r.members !== null ? r.members : (r.rejected ? `${show(r.records)} (${r.rejected} rejected)` : r.records),
      r.files] }))));
  for (const [i, tr] of [...document.querySelectorAll("#rows tbody tr")].entries()) tr.dataset.run = rows[i].id;
}

// --- a run ---------------------------------------------------------------------------------

let batchFilter = "all";
let filesLoadedFor = "";

function pairs(list) {
  return el("dl", {}, ...list.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : show(v))]));
}

function layoutRun() {
  main.replaceChildren(el("h1", { id: "run-title" }), el("div", { id: "run-summary" }),
    el("h2", { text: "Batches" }), el("div", { class: "filters" },
      el("select", { id: "f-batch", "aria-label": "Batch status" })),
    el("div", { id: "batches" }), el("h2", { text: "Files" }), el("div", { id: "files" }),
    el("h2", { text: "Error report" }), el("div", { id: "errors-report" }));
  document.getElementById("f-batch").addEventListener("change", (e) => { batchFilter = e.target.value; render(); });
}

function loadFiles(view) {
  const marker = `${view.id}/${view.phase}`;
  if (filesLoadedFor === marker || view.kind !== "ExportJob") return;
  filesLoadedFor = marker;
  fetch(url("/api/files", { ns: view.namespace, name: view.job, run: view.number }))
    .then((r) => r.json()).then((files) => {
      const box = document.getElementById("files");
      if (files.error) { box.replaceChildren(el("p", { class: "refused", text: files.error })); return; }
      box.replaceChildren(files.files.length === 0 ? el("p", { class: "muted", text: files.filesNote || "No files." })
        : table(["Batch", "File", "Size", ""], files.files.map((f) => ({ cells: [f.batch, f.name, f.size,
          el("a", { href: url("/download", { ns: view.namespace, name: view.job, run: view.number, key: f.key }), text: "Download" })] }))));
      document.getElementById("errors-report").replaceChildren(files.errors.length === 0
        ? el("p", { class: "muted", text: files.errorsNote || "No errors recorded." })
        : table(["Time", "Batch", "Attempt", "Kind", "Reason"], files.errors.map((e) => ({ cells: [e.time, e.batch, e.attempt, e.kind, e.reason] }))));
    });
}

function renderRun(view) {
  document.getElementById("run-title").textContent = `Run ${view.id}`;
  const select = document.getElementById("f-batch");
  if (select.options.length === 0) {
    for (const [value, label] of Object.entries(view.filters)) select.append(el("option", { value, text: label }));
  }
  document.getElementById("run-summary").replaceChildren(pairs([
    ["Job", link("/job", { kind: view.plural, ns: view.namespace, name: view.job }, view.title)],
    ["Status", el("span", { class: `phase ${view.phase}`, id: "run-phase", text: view.phase })],
    ["Progress", bar(view.progress)], ["Message", view.message], ["Trigger", view.trigger],
    ["Initiated by", view.startedBy], ["Start", view.startedAt], ["End", view.finishedAt],
    ["Duration", view.duration], ["Records", view.records], ["Rejected", view.rejected], ["Files", view.files],
    ["Error report", view.errorReport], ["Audit log", view.auditLog]]));
  const batches = view.batches.filter((b) => batchFilter === "all" || b.filter === batchFilter);
  document.getElementById("batches").replaceChildren(batches.length === 0
    ? el("p", { class: "muted", text: view.note || "No batches match." })
    : table(["Batch ID", "Start", "End", "Status", "Processed", "Message"], batches.map((b) => ({ cells: [
      b.index, b.startedAt, b.finishedAt, el("span", { class: `phase ${b.phase}`, text: b.phase }),
      b.processed === null ? DASH : `${b.processed}/${show(b.total)}`, b.message] }))));
  if (view.finished) loadFiles(view);
}

// --- a job ---------------------------------------------------------------------------------

function layoutJob() {
  main.replaceChildren(el("h1", { id: "job-title" }), el("div", { id: "job-actions" }),
    el("div", { id: "job-summary" }), el("h2", { text: "Conditions" }), el("div", { id: "conditions" }),
    el("h2", { text: "Upcoming runs" }), el("div", { id: "upcoming" }),
    el("h2", { text: "Missed runs" }), el("div", { id: "missed" }),
    el("h2", { text: "Runs" }), el("div", { id: "runs" }),
    el("h2", { text: "Events" }), el("div", { id: "events" }));
}

function renderJob(view) {
  document.getElementById("job-title").textContent = `${view.kind} ${view.name}`;
  document.getElementById("job-actions").replaceChildren(actionButtons(view));
  document.getElementById("job-summary").replaceChildren(pairs([
    ...view.spec.map((p) => [p.label, p.value]),
    ["Status", el("span", {}, el("span", { class: `phase ${view.phase}`, text: view.phase }), bar(view.progress))],
    ["Last run", view.lastRun], ["Next run", view.nextRun], ["Ready", view.ready]]));
  const none = (text) => el("p", { class: "muted", text });
  const put = (id, node) => document.getElementById(id).replaceChildren(node);
  put("conditions", view.conditions.length === 0 ? none("None yet.") : table(["Type", "Status", "Reason", "Message", "Since"],
    view.conditions.map((c) => ({ cells: [c.type, c.status, c.reason, c.message, c.since] }))));
  put("upcoming", view.upcoming.length === 0 ? none("None scheduled.") : el("ul", {}, ...view.upcoming.map((u) => el("li", { text: u }))));
  put("missed", view.missed.length === 0 ? none("None.") : table(["Scheduled for", "Reason", "Message"],
    view.missed.map((m) => ({ cells: [m.scheduledFor, m.reason, m.message] }))));
  put("runs", view.runs.length === 0 ? none("No runs yet.") : table(["Run", "Trigger", "Start", "Duration", "Result", "Records"],
    view.runs.map((r) => ({ cells: [runLink(r), r.trigger, r.startedAt, r.duration, r.phase, r.members !== null ? r.members : r.records] }))));
  put("events", view.eventsError ? el("p", { class: "refused", text: view.eventsError })
    : view.events.length === 0 ? none("No events.") : table(["Type", "Reason", "Message", "Count", "Last seen"],
      view.events.map((e) => ({ cells: [e.type, e.reason, e.message, e.count, e.lastSeen] }))));
}

// --- wiring --------------------------------------------------------------------------------

const PAGES = {
  jobs: [layoutJobs, renderJobs], history: [layoutHistory, renderHistory],
  run: [layoutRun, renderRun], job: [layoutJob, renderJob],
};
let latest = null;

function render() {
  if (latest === null) return;
  if (latest.error) { main.replaceChildren(el("p", { class: "refused", text: latest.error })); return; }
  PAGES[PAGE][1](latest);
}

PAGES[PAGE][0]();
const live = document.getElementById("live");
const events = new EventSource(url("/events", { ...PARAMS, page: PAGE }));
events.onopen = () => { live.textContent = "live"; live.className = "live on"; };
events.onerror = () => { live.textContent = "reconnecting"; live.className = "live"; };
events.onmessage = (message) => {
  const view = JSON.parse(message.data);
  if (view.error && latest && !latest.error) PAGES[PAGE][0]();
  if (!view.error && latest && latest.error) PAGES[PAGE][0]();
  latest = view;
  render();
};
