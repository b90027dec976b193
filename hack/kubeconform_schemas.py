"""Offline JSON schemas for kubeconform: `python hack/kubeconform_schemas.py` prints the
`-schema-location` template to pass to kubeconform, generating the schemas when missing.

kubeconform downloads its schemas from GitHub by default; this machine (and CI) cannot
reach it. The same information ships inside the k8s.io/kubernetes Go module, pinned to
KUBERNETES_VERSION in hack/versions.mk and already in the module cache once the local
cluster has been built: `api/openapi-spec/v3/*.json`, the OpenAPI v3 documents the
kube-apiserver serves at /openapi/v3. For each top-level kind (a schema carrying
x-kubernetes-group-version-kind) this writes one standalone file, its referenced
definitions copied under `components.schemas` so the `#/components/schemas/...` refs
resolve inside the file. Object schemas get `additionalProperties: false` (what
kubeconform's "-strict" schemas do), so unknown fields are errors. The ferry.dev kinds
come from crds/ (their openAPIV3Schema), regenerated on every call because
`make crds` may have changed them.

Layout: <out>/<group>/<kind>_<version>.json, matching the kubeconform template
`{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`; kubeconform calls the
core group "v1" (the first part of "v1"), so core kinds land in <out>/v1/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
REF_PREFIX = "#/components/schemas/"
# Markers on a schema that mean "any extra keys are allowed here".
OPEN_MARKERS = ("additionalProperties", "x-kubernetes-preserve-unknown-fields")


def pinned_version(key: str) -> str:
    text = (ROOT / "hack" / "versions.mk").read_text()
    match = re.search(rf"^{key}\s*:=\s*(\S+)", text, re.MULTILINE)
    if match is None:
        sys.exit(f"error: {key} is not set in hack/versions.mk")
    return match.group(1).removeprefix("v")


def openapi_dir(k8s_version: str) -> Path:
    """api/openapi-spec/v3 of the k8s.io/kubernetes module (from the module cache)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{k8s_version}"],
        capture_output=True, text=True, check=False, env=env, cwd="/",
    )
    if result.returncode != 0:
        sys.exit(f"error: cannot get k8s.io/kubernetes@v{k8s_version} from the Go module "
                 f"cache or proxy: {result.stderr.strip() or result.stdout.strip()}")
    directory = Path(json.loads(result.stdout)["Dir"]) / "api" / "openapi-spec" / "v3"
    if not directory.is_dir():
        sys.exit(f"error: {directory} is missing from the k8s.io/kubernetes module")
    return directory


def strict(schema: Any) -> Any:
    """A deep copy with additionalProperties: false on every closed object schema."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and not any(marker in out for marker in OPEN_MARKERS):
        out["additionalProperties"] = False
    return out


def refs(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref.removeprefix(REF_PREFIX))
        for value in schema.values():
            found |= refs(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= refs(item)
    return found


def closure(name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    todo, seen = [name], {}
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen[current] = schemas[current]
        todo.extend(refs(schemas[current]) - seen.keys())
    return seen


def write(out: Path, group: str, kind: str, version: str, schema: dict[str, Any]) -> None:
    path = out / (group or "v1") / f"{kind.lower()}_{version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))


def generate_core(source: Path, out: Path) -> int:
    count = 0
    for document in sorted(source.glob("*_openapi.json")):
        schemas = json.loads(document.read_text()).get("components", {}).get("schemas", {})
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                # Only the document of the kind's own group/version, not the copies of
                # shared types (DeleteOptions, WatchEvent...) every document carries.
                if not document.name.endswith(
                        f"{gvk['group'] or 'api'}__{gvk['version']}_openapi.json"):
                    continue
                if gvk["group"] and not document.name.startswith("apis__"):
                    continue
                parts = closure(name, schemas)
                standalone = strict(dict(parts.pop(name)))
                standalone["components"] = {"schemas": strict(parts)}
                write(out, gvk["group"], gvk["kind"], gvk["version"], standalone)
                count += 1
    return count


def generate_crds(crd_dir: Path, out: Path) -> int:
    count = 0
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props.setdefault("metadata", {"type": "object"})
                write(out, group, kind, version["name"], schema)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="default: .cache/kubeconform-schemas/<k8s>")
    parser.add_argument("--quiet", action="store_true")
    options = parser.parse_args(argv)
    k8s_version = pinned_version("KUBERNETES_VERSION")
    out: Path = options.out or ROOT / ".cache" / "kubeconform-schemas" / f"v{k8s_version}"
    stamp = out / ".core-complete"
    if not stamp.exists():
        count = generate_core(openapi_dir(k8s_version), out)
        if count < 50:
            sys.exit(f"error: only {count} core kinds found in the OpenAPI documents")
        stamp.write_text(f"{count}\n")
        if not options.quiet:
            print(f">> {count} Kubernetes v{k8s_version} schemas in {out}", file=sys.stderr)
    generate_crds(ROOT / "crds", out)
    print(f"{out}/{TEMPLATE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
