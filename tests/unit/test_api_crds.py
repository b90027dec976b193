"""The generated CRDs: up to date with the models, structural, bounded and documented."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ferry.api import (
    ExportJobSpec,
    ExportJobStatus,
    ImportJobSpec,
    ImportJobStatus,
    JobGroupSpec,
    JobGroupStatus,
)
from ferry.api.crdgen import exportjob_crd, importjob_crd, jobgroup_crd, render

ROOT = Path(__file__).resolve().parents[2]
CRDS = {"ExportJob": exportjob_crd(), "ImportJob": importjob_crd(), "JobGroup": jobgroup_crd()}
Schema = dict[str, Any]


def root(kind: str) -> Schema:
    schema: Schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its dotted path."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


ALL_NODES = [(kind, path, node) for kind in CRDS for path, node in nodes(root(kind))]
# Ferry's own fields (metadata belongs to the API server; only its name carries a rule).
OWN_NODES = [(k, p, n) for k, p, n in ALL_NODES if p.startswith((".spec.", ".status."))]


def test_committed_crds_are_up_to_date() -> None:
    for name, text in render().items():
        committed = ROOT / "crds" / name
        assert committed.exists(), f"{committed} missing: run make crds"
        assert committed.read_text() == text, f"{committed} is stale: run make crds"


def test_crd_metadata() -> None:
    for kind, short in (("ExportJob", "ej"), ("ImportJob", "ij"), ("JobGroup", "jg")):
        spec = CRDS[kind]["spec"]
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["ferry"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
    columns = [
        c["name"] for c in CRDS["ExportJob"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    wide = {"Source", "Started By", "Group Run"}
    assert [c for c in columns if c not in wide] == [
        "Title",
        "Type",
        "Schedule",
        "Ready",
        "Phase",
        "Progress",
        "ETA",
        "Last Run",
        "Initiated By",
        "Next Run",
        "Age",
    ]
    group_columns = {
        c["name"]: c["jsonPath"]
        for c in CRDS["JobGroup"]["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert list(group_columns) == ["Title", "Type", "Schedule", "Members", "Ready", "Phase",
                                   "Current", "Last Run", "Initiated By", "Started By",
                                   "Next Run", "Age"]
    # A count, not the spec's JSON list.
    assert group_columns["Members"] == ".status.memberSummary"
    assert group_columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'


def test_importjob_crd_names_and_columns() -> None:
    """`kubectl get ij` (and `kubectl get ferry`) shows an ExportJob's columns plus the
    mode and the table; -o wide the schedule type, rows rejected and the export run."""
    spec = CRDS["ImportJob"]["spec"]
    assert CRDS["ImportJob"]["metadata"]["name"] == "importjobs.ferry.dev"
    assert spec["names"] == {"kind": "ImportJob", "listKind": "ImportJobList",
                             "plural": "importjobs", "singular": "importjob",
                             "shortNames": ["ij"], "categories": ["ferry"]}
    assert spec["scope"] == "Namespaced"
    columns = spec["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Title", ".spec.title"),
        ("Mode", ".spec.mode"),
        ("Table", ".spec.destination.table"),
        ("Type", ".status.scheduleType"),
        ("Schedule", ".status.scheduleSummary"),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        ("Phase", ".status.phase"),
        ("Progress", ".status.progress"),
        ("ETA", ".status.eta"),
        ("Last Run", ".status.lastRun.finishedAt"),
        ("Initiated By", ".status.lastRun.trigger"),
        ("Rejected", ".status.lastRun.recordsRejected"),
        ("Source Run", ".status.lastRun.sourceRun"),
        ("Next Run", ".status.nextRunAt"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    assert [c["name"] for c in columns if c.get("priority") == 1] == [
        "Type", "Rejected", "Source Run"]


def test_importjob_status_is_the_exportjob_status_plus_nothing() -> None:
    """One status schema for both kinds: the loop and the CLI read them alike."""
    export_status = root("ExportJob")["properties"]["status"]
    import_status = root("ImportJob")["properties"]["status"]
    assert import_status["properties"] == export_status["properties"]
    history = import_status["properties"]["history"]["items"]["properties"]
    assert {"recordsRejected", "auditLog"} <= set(history)
    assert "SucceededWithErrors" in history["phase"]["enum"]
    assert "SucceededWithErrors" in import_status["properties"]["phase"]["enum"]


def test_importjob_spec_reuses_the_exportjob_types() -> None:
    """Same meaning, same schema: the ExportJob's own types, not copies that drift."""
    export_spec = root("ExportJob")["properties"]["spec"]["properties"]
    import_spec = root("ImportJob")["properties"]["spec"]["properties"]
    for name in ("schedule", "worker"):
        assert import_spec[name] == export_spec[name], name
    assert import_spec["concurrency"]["properties"] == export_spec["concurrency"]["properties"]
    for name in ("parallelism", "retriesPerBatch"):
        assert import_spec["batching"]["properties"][name] == \
            export_spec["batching"]["properties"][name]
    s3_out = export_spec["output"]["properties"]["s3"]
    s3_in = import_spec["source"]["properties"]["s3"]
    assert {k: v for k, v in s3_in["properties"].items() if k != "glob"} == s3_out["properties"]
    assert s3_out["x-kubernetes-validations"][0] in s3_in["x-kubernetes-validations"]
    assert import_spec["destination"]["properties"]["connectionSecretRef"] == \
        {**export_spec["source"]["properties"]["connectionSecretRef"],
         "description": import_spec["destination"]["properties"]["connectionSecretRef"][
             "description"]}
    assert import_spec["destination"]["properties"]["table"]["pattern"] == \
        export_spec["source"]["properties"]["table"]["pattern"]
    assert import_spec["format"]["enum"] == export_spec["output"]["properties"]["format"]["enum"]


def test_importjob_cel_rules() -> None:
    """Every ImportJob-only rule, where it sits and which field its error names."""
    spec = root("ImportJob")["properties"]["spec"]
    rules = {r["message"]: r.get("fieldPath") for r in spec["x-kubernetes-validations"]}
    assert rules == {
        "spec.csv applies only to format csv: remove it, or set format: csv": ".csv",
        "spec.keyColumns is required by mode Merge: rows whose key columns match are "
        "updated, the others inserted": ".keyColumns",
        "spec.keyColumns applies only to mode Merge: remove it, or set mode: Merge":
            ".keyColumns",
        "every spec.keyColumns entry must be a spec.destination.columns[].name: a merge "
        "matches rows on loaded columns": ".keyColumns",
        "spec.batching.batches must be 1 with mode Overwrite: the table's contents are "
        "replaced in one transaction": ".batching.batches",
        "spec.newFilesOnly cannot be combined with mode Overwrite: the table would be "
        "replaced by the new files alone": ".newFilesOnly",
    }
    source = spec["properties"]["source"]
    assert [r["message"] for r in source["x-kubernetes-validations"]] == [
        "set exactly one of s3 or fromExport"]
    assert source["properties"]["fromExport"]["x-kubernetes-validations"][0]["fieldPath"] == ".run"
    root_rules = root("ImportJob")["x-kubernetes-validations"]
    assert root_rules[0]["message"].endswith("create a new ImportJob instead")
    columns = spec["properties"]["destination"]["properties"]["columns"]
    assert (columns["x-kubernetes-list-type"], columns["x-kubernetes-list-map-keys"]) == (
        "map", ["name"])
    assert columns["items"]["required"] == ["name"]
    assert spec["properties"]["keyColumns"]["x-kubernetes-list-type"] == "set"


def test_printer_columns_point_at_schema_fields() -> None:
    for kind in CRDS:
        paths = {path for path, _ in nodes(root(kind))}
        for column in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
            # A list filter or index selects items: the path of the items' field.
            path = re.sub(r"\[[^]]*\]", "[]", column["jsonPath"])
            if not path.startswith(".metadata"):
                assert path in paths, column


def test_every_node_is_structural() -> None:
    for kind, path, node in ALL_NODES:
        where = f"{kind}{path}"
        assert "$ref" not in node and "$defs" not in node and "allOf" not in node, where
        assert "oneOf" not in node and "not" not in node and "title" not in node, where
        assert node.get("additionalProperties") is not False, where
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
        else:
            assert "anyOf" not in node, where
            assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, where


def test_every_int_or_string_field_is_marked_and_says_so() -> None:
    """Every field that takes an integer or a string carries x-kubernetes-int-or-string
    (the Kubernetes way: the API server accepts both, keeps the type, and publishes it).
    kubectl explain still shows such a field as <Object> (it reads only ``type``, which
    an int-or-string node must leave out: kubernetes/kubernetes#130946), so its
    description starts by saying what it takes."""
    marked = {f"{kind}{path}": node for kind, path, node in ALL_NODES
              if node.get("x-kubernetes-int-or-string") or "anyOf" in node}
    assert sorted(marked) == [
        "ExportJob.spec.output.fileSplitSize",
        "ExportJob.spec.worker.resources.limits{}",
        "ExportJob.spec.worker.resources.requests{}",
        "ImportJob.spec.maxErrors",
        "ImportJob.spec.worker.resources.limits{}",
        "ImportJob.spec.worker.resources.requests{}",
    ]
    for node in marked.values():
        assert node["x-kubernetes-int-or-string"] is True
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    spec = root("ExportJob")["properties"]["spec"]["properties"]
    assert spec["output"]["properties"]["fileSplitSize"]["description"].startswith(
        "Integer or string. Split each batch's output into numbered files ")
    resources = spec["worker"]["properties"]["resources"]["properties"]
    assert resources["requests"]["description"] == (
        "A map of integers or strings. Minimum resources, e.g. {cpu: 500m, memory: 512Mi}.")
    assert resources["limits"]["description"] == (
        "A map of integers or strings. Maximum resources, e.g. {memory: 1Gi}.")
    max_errors = root("ImportJob")["properties"]["spec"]["properties"]["maxErrors"]
    assert max_errors["description"].startswith("Integer or string. Rows each batch may reject ")
    assert max_errors["default"] == 0


def test_every_field_is_documented() -> None:
    for kind, path, node in OWN_NODES:
        if not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{kind}{path} has no description"


def test_every_string_list_and_map_is_bounded() -> None:
    for kind, path, node in OWN_NODES:
        where = f"{kind}{path}"
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node or node.get("format") == "date-time", where
        if node.get("type") == "array":
            assert "maxItems" in node, where
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, where


def test_cel_rules_have_messages() -> None:
    rules = [r for _, _, node in ALL_NODES for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 12
    for rule in rules:
        assert rule["rule"] and rule["message"]


def test_list_types() -> None:
    status = root("ExportJob")["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in status["conditions"]["items"]["required"]
    members = root("JobGroup")["properties"]["spec"]["properties"]["members"]
    assert members["x-kubernetes-list-type"] == "set"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside X, X | None, list[X] or Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _step_into(schema: Schema) -> Schema:
    return schema["items"] if schema.get("type") == "array" else schema


MODEL_ROOTS = [
    ("ExportJob", "spec", ExportJobSpec),
    ("ExportJob", "status", ExportJobStatus),
    ("ImportJob", "spec", ImportJobSpec),
    ("ImportJob", "status", ImportJobStatus),
    ("JobGroup", "spec", JobGroupSpec),
    ("JobGroup", "status", JobGroupStatus),
]


@given(st.sampled_from(MODEL_ROOTS), st.data())
def test_every_model_field_has_a_schema_property(
    start: tuple[str, str, type[BaseModel]], data: st.DataObject
) -> None:
    """Walk a random path through the models: each field exists in the CRD under its alias,
    so the API server never prunes a value the controller writes."""
    kind, top, model = start
    schema = root(kind)["properties"][top]
    current: type[BaseModel] | None = model
    while current is not None and current.model_fields:
        name, info = data.draw(st.sampled_from(sorted(current.model_fields.items())))
        alias = info.alias or name
        assert alias in schema["properties"], f"{current.__name__}.{name} missing as {alias}"
        schema = _step_into(schema["properties"][alias])
        current = _model_of(info.annotation)


def test_crd_yaml_files_parse() -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "CustomResourceDefinition"
