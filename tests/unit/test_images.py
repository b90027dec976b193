"""images/*/Dockerfile: the images cannot be built on this machine (no Docker engine), so
these checks hold them to their contract: pinned base, multi-stage, non-root numeric
user, and an exec-form ENTRYPOINT that is a console script pyproject.toml installs."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"ferry-operator": "ferry-operator", "ferry-worker": "ferry-worker"}
SCRIPTS: dict[str, str] = tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> list[Stage]:
    """Dockerfile stages with their instructions (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            assert not words[0].startswith("--"), "no FROM --platform pinning in these images"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, " ".join(rest.split())))
    return stages


def last(stage: Stage, keyword: str) -> str | None:
    values = [rest for kw, rest in stage.instructions if kw == keyword]
    return values[-1] if values else None


@pytest.fixture(params=sorted(IMAGES))
def image(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stages_of(image: str) -> list[Stage]:
    path = ROOT / "images" / image / "Dockerfile"
    assert path.exists(), path
    return parse(path)


def test_every_image_is_built_from_a_pinned_base(image: str) -> None:
    for stage in stages_of(image):
        assert PINNED_PYTHON.match(stage.base), f"{image}: unpinned base {stage.base}"
    assert len({s.base for s in stages_of(image)}) == 1, "builder and runtime bases differ"


def test_images_are_multi_stage_and_ship_no_build_tree(image: str) -> None:
    builder, runtime = stages_of(image)
    assert builder.name == "builder"
    assert any(kw == "RUN" and "pip wheel" in rest for kw, rest in builder.instructions)
    assert runtime.name is None
    assert not any(kw == "RUN" for kw, _ in runtime.instructions), "runtime stage runs nothing"
    copies = [rest for kw, rest in runtime.instructions if kw == "COPY"]
    assert copies == ["--from=builder /opt/ferry /opt/ferry"]


def test_images_run_as_non_root_numeric_user(image: str) -> None:
    runtime = stages_of(image)[-1]
    user = last(runtime, "USER")
    assert user is not None, f"{image}: no USER"
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{image}: USER {user} must be a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert int(uid) == 65532


def test_entrypoint_is_a_declared_console_script(image: str) -> None:
    runtime = stages_of(image)[-1]
    entrypoint = last(runtime, "ENTRYPOINT")
    assert entrypoint is not None, f"{image}: no ENTRYPOINT"
    argv = json.loads(entrypoint)  # exec form only: a JSON array, no shell
    assert isinstance(argv, list)
    assert len(argv) == 1
    script = Path(argv[0]).name
    assert script == IMAGES[image]
    assert script in SCRIPTS, f"{script} is not in pyproject [project.scripts]"
    assert argv[0] == f"/opt/ferry/bin/{script}", "the venv copied from the builder"
    assert last(runtime, "CMD") is None


def test_builder_installs_the_distribution_the_scripts_come_from(image: str) -> None:
    builder = stages_of(image)[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    run = " ".join(rest for kw, rest in builder.instructions if kw == "RUN")
    assert project["name"] in shlex.split(run)
    copied = " ".join(rest for kw, rest in builder.instructions if kw == "COPY")
    for needed in ("pyproject.toml", "setup.py", "README.md", "operator"):
        assert needed in copied


def test_builder_can_compile_the_c_extension(image: str) -> None:
    """setup.py builds a C extension, and the slim base image has no compiler; a wheel
    built without one would fail, not fall back."""
    builder = stages_of(image)[0]
    run = " ".join(rest for kw, rest in builder.instructions if kw == "RUN")
    assert "apt-get install" in run and "gcc" in shlex.split(run)
    compiles = next(i for i, (kw, rest) in enumerate(builder.instructions) if "gcc" in rest)
    wheel = next(i for i, (kw, rest) in enumerate(builder.instructions) if "pip wheel" in rest)
    assert compiles < wheel


def test_dockerignore_keeps_the_context_small(image: str) -> None:
    lines = (ROOT / "images" / image / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "exclude everything first, then re-include what the wheel needs"
    assert {"!pyproject.toml", "!setup.py", "!README.md", "!operator/"} <= set(rules)


def test_parser_reads_a_known_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text('FROM a:1 AS builder\nRUN x \\\n  y\n# c\nFROM a:1\nUSER 1:2\n'
                    'ENTRYPOINT ["/bin/z"]\n')
    builder, runtime = parse(path)
    assert (builder.name, builder.instructions) == ("builder", [("RUN", "x y")])
    assert runtime.instructions == [("USER", "1:2"), ("ENTRYPOINT", '["/bin/z"]')]
