"""The generated CRDs: up to date with the models, structural, bounded and documented."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ferry.api import ExportJobSpec, ExportJobStatus, JobGroupSpec, JobGroupStatus
from ferry.api.crdgen import exportjob_crd, jobgroup_crd, render

ROOT = Path(__file__).resolve().parents[2]
CRDS = {"ExportJob": exportjob_crd(), "JobGroup": jobgroup_crd()}
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
    for kind, short in (("ExportJob", "ej"), ("JobGroup", "jg")):
        spec = CRDS[kind]["spec"]
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["ferry"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
    columns = [
        c["name"] for c in CRDS["ExportJob"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert [c for c in columns if c != "Source"] == [
        "Title",
        "Schedule",
        "Phase",
        "Progress",
        "ETA",
        "Last Run",
        "Next Run",
        "Age",
    ]
    group_columns = [
        c["name"] for c in CRDS["JobGroup"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert group_columns == ["Title", "Members", "Phase", "Current", "Last Run", "Next Run", "Age"]


def test_printer_columns_point_at_schema_fields() -> None:
    for kind in CRDS:
        paths = {path for path, _ in nodes(root(kind))}
        for column in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
            if not column["jsonPath"].startswith(".metadata"):
                assert column["jsonPath"] in paths, column


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
