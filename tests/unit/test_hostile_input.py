"""Hostile input (issue 8, item 10): bad manifests and annotations never crash the
operator, never reach SQL or S3 keys as anything but data, and never produce a Job
the worker (or the API server: see tests/e2e/test_faults.py) would refuse.

Hypothesis drives the spec models and the controller's pure functions
(`ferry.reconcile.runs.reconcile`, `ferry.reconcile.jobspec.build_job`); the named
cases below pin the exact field each classic attack is rejected on.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ferry.api.exportjob import ExportJobSpec
from ferry.api.status import ExportJobStatus
from ferry.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_REQUESTED_BY,
    ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_RUN_REQUESTED_AT,
    ANNOTATION_STOP_REQUESTED_AT,
)
from ferry.reconcile.runs import reconcile
from ferry.worker.plan import parse_plan

from .builders import T0, observation, spec

BASE: dict[str, Any] = spec().doc

HOSTILE_TEXT = [
    "x; DROP TABLE users; --", "x\" OR \"1\"=\"1", "' OR 1=1 --", "x'); DELETE FROM t; --",
    "$$; SELECT pg_sleep(10); $$", "\\x00", "a\x00b", "a\nb", "a\rb", "../../etc/passwd",
    "..", ".", "/", "//", "a//b", "/abs", "a/../b", "%2e%2e/x", "${HOME}", "$(id)", "`id`",
    "x" * 64, "x" * 300, "ü", "🙂", "", " ", "CON", "a b", "pg_catalog.pg_authid",
    "information_schema.tables", "public.t; x",
]
text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=80))
# PostgreSQL's 63-byte identifier limit from both sides (63 accepted, 64 refused), in
# each part of a schema-qualified name, and in multibyte characters (2 bytes each).
BOUNDARY_NAMES = ["i" * 63, "i" * 64, "s" * 63 + "." + "t" * 63, "s" * 64 + ".t",
                  "s." + "t" * 64, "ü" * 31, "ü" * 32]
identifier = st.one_of(st.sampled_from(BOUNDARY_NAMES), text,
                       st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{60,65}", fullmatch=True))

# A spec document with any of its user-controlled leaves replaced by hostile values.
mutations: dict[str, Any] = {
    "title": st.one_of(text, st.text(min_size=199, max_size=210)),
    "description": st.one_of(text, st.none()),
    "source.table": st.one_of(identifier, st.builds("{}.{}".format, identifier, identifier)),
    "source.timestampColumn": identifier,
    "source.keyColumn": identifier,
    "source.columns": st.lists(identifier, max_size=5),
    "source.filters": st.lists(st.fixed_dictionaries({"column": identifier}, optional={
        "in": st.lists(text, max_size=4), "notIn": st.lists(text, max_size=3),
        "equals": text, "isNull": st.booleans()}), max_size=3),
    "source.connectionSecretRef.name": text,
    "source.connectionSecretRef.key": text,
    "output.s3.prefix": text,
    "output.s3.bucket": text,
    "output.s3.endpoint": st.one_of(text, st.just("http://user:pw@host:9000/")),
    "output.s3.region": text,
    "output.s3.credentialsSecretRef.secretAccessKeyKey": text,
    "output.format": text,
    "output.fileSplitSize": st.one_of(text, st.integers(-2**63, 2**63)),
    "schedule": st.one_of(
        st.builds(lambda e: {"cron": {"expression": e}}, text),
        st.builds(lambda e, m: {"hourly": {"every": e, "minute": m}},
                  st.integers(-5, 30), st.integers(-5, 70)),
        st.builds(lambda z: {"daily": {"at": "01:00"}, "timeZone": z}, text)),
    "batching": st.fixed_dictionaries({}, optional={
        "batches": st.integers(-1, 2000), "parallelism": st.integers(-1, 200),
        "retriesPerBatch": st.integers(-1, 20)}),
    "concurrency": st.fixed_dictionaries({"key": text}),
    "worker": st.fixed_dictionaries({}, optional={
        "image": text, "serviceAccountName": text,
        "nodeSelector": st.dictionaries(text, text, max_size=2)}),
    "historyLimit": st.integers(-5, 1000),
    "timeframe": st.one_of(
        st.builds(lambda s, e: {"fixed": {"start": s, "end": e}}, text, text),
        st.builds(lambda last: {"relative": {"last": last}}, text)),
}


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = value


@st.composite
def spec_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    chosen = draw(st.lists(st.sampled_from(sorted(mutations)), min_size=1, max_size=4,
                           unique=True))
    for path in chosen:
        set_path(doc, path, draw(mutations[path]))
    return doc


def accepted(doc: dict[str, Any]) -> ExportJobSpec | None:
    try:
        return ExportJobSpec.model_validate(doc)
    except ValidationError:
        return None


def identifiers_of(doc: dict[str, Any]) -> list[str]:
    """Every PostgreSQL identifier a spec document names (each part of the table)."""
    source = doc["source"]
    names = [*str(source.get("table") or "").split("."), *(source.get("columns") or []),
             *(f["column"] for f in source.get("filters") or [])]
    names += [source[key] for key in ("keyColumn", "timestampColumn") if source.get(key)]
    return [str(name) for name in names]


def worker_plan_of(job: dict[str, Any]) -> dict[str, Any]:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return json.loads(next(e["value"] for e in env if e["name"] == "FERRY_PLAN"))  # type: ignore[no-any-return]


HYPOTHESIS = settings(max_examples=400, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(spec_documents())
def test_no_spec_document_crashes_validation(doc: dict[str, Any]) -> None:
    """Only ValidationError (what kopf turns into a clear status) ever escapes."""
    accepted(doc)


def with_source(**fields: Any) -> dict[str, Any]:
    return {**BASE, "source": {**BASE["source"], **fields}}


@HYPOTHESIS
@given(spec_documents(), st.integers(1, 10**6))
@example(with_source(table="s" * 63 + "." + "t" * 63, keyColumn="k" * 63,
                     columns=["k" * 63, "c" * 63],
                     filters=[{"column": "f" * 63, "equals": "x"}]), 1)
@example(with_source(table="t" * 64), 1)
@example(with_source(keyColumn="k" * 64), 1)
def test_every_accepted_spec_yields_a_job_the_worker_accepts(doc: dict[str, Any],
                                                             run: int) -> None:
    job_spec = accepted(doc)
    if job_spec is None:
        return
    longest = max(len(name.encode()) for name in identifiers_of(doc))
    assert longest <= 63, f"the API accepted a {longest}-byte identifier"
    now = T0 + dt.timedelta(days=1)
    decision = reconcile(observation(job_spec, now, annotations={
        ANNOTATION_RUN_REQUESTED_AT: str(run)}))
    ExportJobStatus.model_validate(decision.status.to_k8s())  # the status schema holds
    if decision.create_job is None:
        return  # e.g. an invalid cron or time zone: reported as a condition, no Job
    job = decision.create_job
    assert len(job["metadata"]["name"]) <= 63
    plan = worker_plan_of(job)
    for index in range(job["spec"]["completions"]):
        parsed = parse_plan(plan, {"JOB_COMPLETION_INDEX": str(index)})
        # What the user wrote is what the worker uses: identifiers as identifiers,
        # filter values as values, and a prefix without traversal.
        assert parsed.destination.prefix.split("/")[0] not in ("", ".", "..") or \
            parsed.destination.prefix == ""


annotation_keys = st.sampled_from([
    ANNOTATION_RUN_REQUESTED_AT, ANNOTATION_STOP_REQUESTED_AT, ANNOTATION_RETRY_REQUESTED_AT,
    ANNOTATION_REQUESTED_BY, ANNOTATION_CREATED_BY, "ferry.dev/backfill", "other/x"])


@HYPOTHESIS
@given(st.dictionaries(annotation_keys, st.one_of(text, st.text(min_size=60, max_size=400)),
                       max_size=6),
       st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                    timezones=st.just(dt.UTC)))
def test_hostile_annotations_and_clocks_never_crash_reconcile(annotations: dict[str, str],
                                                              now: dt.datetime) -> None:
    """Annotations are free text anyone with patch rights can set; the status written
    from them must still pass the status schema (else every status write fails)."""
    job_spec = spec().set("schedule", {"cron": {"expression": "*/5 * * * *"}}).build()
    decision = reconcile(observation(job_spec, now, annotations=annotations,
                                     created_at=now - dt.timedelta(hours=3)))
    ExportJobStatus.model_validate(decision.status.to_k8s())
    assert len(json.dumps(decision.status.to_k8s())) < 64 * 1024


# ---- named attacks: the exact field that refuses each one ---------------------------

@pytest.mark.parametrize(("path", "value"), [
    ("source.table", "users; DROP TABLE users"),
    ("source.table", 'users" OR "1"="1'),
    ("source.table", "a.b.c"),
    ("source.table", "t" * 64),  # found by hypothesis: the worker refuses > 63 bytes
    ("source.table", "public." + "t" * 64),
    ("source.timestampColumn", "created_at) OR (1=1"),
    ("source.keyColumn", "id; --"),
    ("source.columns", ["id", "pg_read_file('/etc/passwd')"]),
    ("source.filters", [{"column": "x' OR '1'='1", "equals": "1"}]),
    ("output.s3.prefix", "../../other-team"),
    ("output.s3.prefix", "team-a/../../other-team"),
    ("output.s3.prefix", "/absolute"),
    ("output.s3.prefix", "a//b"),
    ("output.s3.prefix", "a/./b"),
    ("output.s3.prefix", "line\nbreak"),
    ("output.s3.bucket", "../bucket"),
    ("output.s3.endpoint", "file:///etc/passwd"),
    ("source.connectionSecretRef.name", "../kube-system/secret"),
    ("concurrency.key", "key with spaces"),
    ("source.connectionSecretRef.key", ".."),  # found by the server-side dry run
    ("output.s3.credentialsSecretRef.secretAccessKeyKey", "."),
])
def test_injection_and_traversal_are_rejected_on_their_field(path: str, value: Any) -> None:
    doc = copy.deepcopy(BASE)
    set_path(doc, path, value)
    with pytest.raises(ValidationError) as raised:
        ExportJobSpec.model_validate(doc)
    locations = {".".join(str(p) for p in e["loc"]) for e in raised.value.errors()}
    assert any(loc.startswith(path) for loc in locations), locations


@pytest.mark.parametrize(("path", "value"), [
    ("title", "t" * 201),
    ("description", "d" * 4097),
    ("source.columns", [f"c{i}" for i in range(257)]),
    ("source.filters", [{"column": "c", "equals": "v"}] * 33),
    ("source.filters", [{"column": "c", "in": [str(i) for i in range(101)]}]),
    ("source.filters", [{"column": "c", "equals": "v" * 1025}]),
    ("source.timestampColumn", "c" * 64),
    ("source.keyColumn", "k" * 64),
    ("source.columns", ["id", "c" * 64]),
    ("source.filters", [{"column": "c" * 64, "equals": "v"}]),
    ("output.s3.prefix", "p" * 513),
    ("schedule", {"cron": {"expression": "*" * 129}}),
])
def test_oversized_strings_and_lists_are_rejected(path: str, value: Any) -> None:
    doc = copy.deepcopy(BASE)
    set_path(doc, path, value)
    with pytest.raises(ValidationError) as raised:
        ExportJobSpec.model_validate(doc)
    assert raised.value.errors()[0]["type"] in {"string_too_long", "too_long"}


def test_filter_values_and_a_query_reach_the_worker_as_data() -> None:
    """SQL in a filter value is accepted (it is data) and travels as a bound value."""
    evil = "x'); DROP TABLE interactions; --"
    job_spec = spec().set("source.filters", [{"column": "media_type", "in": [evil]},
                                             {"column": "note", "equals": evil}]).build()
    decision = reconcile(observation(job_spec, T0, annotations={
        ANNOTATION_RUN_REQUESTED_AT: "1"}))
    assert decision.create_job is not None
    plan = worker_plan_of(decision.create_job)
    assert plan["filters"] == [{"column": "media_type", "op": "in", "values": [evil]},
                               {"column": "note", "op": "eq", "value": evil}]
    parse_plan(plan, {"JOB_COMPLETION_INDEX": "0"})


def test_schema_prefix_rule_matches_the_workers() -> None:
    """Regression (found by this suite): the CRD accepted prefixes like `../x`,
    `a//b` or `a b` that the worker refuses, so a run failed at the pod instead of
    at `kubectl apply`. Both rules now agree on these cases."""
    from ferry.worker.plan import ConfigError  # noqa: PLC0415

    for prefix in ["e2e", "team-a/exports/", "...", ".hidden/x", "a.b/c..d", "x=1/(y)",
                   "../x", "a/../b", "a//b", "./x", ".", "..", "a b", "x\n", "/abs", "%2e"]:
        schema_ok = accepted({**BASE, "output": {**BASE["output"], "s3": {
            **BASE["output"]["s3"], "prefix": prefix}}}) is not None
        try:
            parse_plan({"job": "j", "run": "1", "source": {"table": "t"},
                        "destination": {"bucket": "b-1", "prefix": prefix}}, {})
            worker_ok = True
        except ConfigError:
            worker_ok = False
        if prefix != "/abs":  # the worker strips a leading slash; the schema forbids it
            assert schema_ok == worker_ok, prefix
