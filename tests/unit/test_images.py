"""images/*/Dockerfile: these checks hold them to their contract: a base given as the
build argument BASE whose default is a pinned public image, multi-stage, dependencies
from the hashed lock files only, non-root numeric user, and an exec-form ENTRYPOINT that
is a console script pyproject.toml installs. `make images` builds them here (buildah, a
debootstrap base) and tests/e2e/test_images_run.py runs them."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"ferry-operator": "ferry-operator", "ferry-worker": "ferry-worker"}
SCRIPTS: dict[str, str] = tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")
LOCKS = ("requirements.lock", "build-requirements.lock")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]  # the ARGs before the first FROM, with their defaults
    stages: list[Stage]

    def base_of(self, stage: Stage) -> str:
        """The stage's base with the global ARGs' defaults substituted."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.args[m.group(1)], stage.base)


def parse_file(path: Path) -> Dockerfile:
    """Global ARGs and stages with their instructions (continuations joined, comments
    dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
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
        elif keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg.strip()] = default.strip()
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, " ".join(rest.split())))
    return Dockerfile(args, stages)


def parse(path: Path) -> list[Stage]:
    return parse_file(path).stages


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


def dockerfile_of(image: str) -> Dockerfile:
    return parse_file(ROOT / "images" / image / "Dockerfile")


def test_every_image_is_built_from_a_pinned_base(image: str) -> None:
    dockerfile = dockerfile_of(image)
    for stage in dockerfile.stages:
        base = dockerfile.base_of(stage)
        assert PINNED_PYTHON.match(base), f"{image}: unpinned base {base}"
    assert len({s.base for s in dockerfile.stages}) == 1, "builder and runtime bases differ"


def test_the_base_is_a_build_argument_make_images_sets(image: str) -> None:
    """Users with a registry get the public base by default; `make images` passes its
    debootstrap base (no registry here)."""
    dockerfile = dockerfile_of(image)
    assert set(dockerfile.args) == {"BASE"}
    assert {s.base for s in dockerfile.stages} == {"${BASE}"}
    script = (ROOT / "hack" / "build-images.sh").read_text()
    assert '--build-arg BASE="$BASE_IMAGE"' in script
    assert "--pull=never" in script, "make images never reaches for a registry"
    for option in ('--root "$CACHE/storage"', '--runroot "$CACHE/run"'):
        assert option in script, "buildah's storage stays under .cache/images"


def test_dependencies_come_only_from_the_hashed_locks(image: str) -> None:
    builder = stages_of(image)[0]
    runs = [rest for kw, rest in builder.instructions if kw == "RUN"]
    installs = [shlex.split(r) for r in runs]
    text = " ".join(runs)
    for lock in LOCKS:
        assert f"--require-hashes --no-deps -r {lock}" in text
    wheel = next(r for r in runs if "pip wheel" in r)
    assert "--no-build-isolation" in wheel and "--no-deps" in wheel
    assert "--no-index" in shlex.split(wheel), "the wheel's own install resolves nothing"
    assert any("check" in words for words in installs), "pip check: the lock satisfies it"
    copies = " ".join(rest for kw, rest in builder.instructions if kw == "COPY")
    assert all(f"images/{lock}" in copies for lock in LOCKS)


def test_locks_pin_every_dependency_with_hashes() -> None:
    """Each lock entry is name==version with at least one hash, and the lock satisfies
    every dependency pyproject.toml declares (`make lock` regenerates them)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins: dict[str, str] = {}
    for lock in LOCKS:
        text = (ROOT / "images" / lock).read_text()
        for entry in re.split(r"\n(?=\S)", re.sub(r"^#.*\n", "", text, flags=re.M)):
            if not entry.strip() or entry.startswith("#"):
                continue
            head = entry.split()[0]
            name, sep, version = head.partition("==")
            assert sep, f"{lock}: {head} is not pinned"
            assert "--hash=sha256:" in entry, f"{lock}: {head} has no hash"
            pins[canonicalize_name(name)] = version
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec} is not in images/*.lock: run make lock"
        assert spec.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {spec}"
        for extra in spec.extras:  # psycopg[binary]
            assert canonicalize_name(f"{spec.name}-{extra}") in pins


def test_image_specific_lines_come_last_so_both_images_share_their_layers() -> None:
    """Both images are the same venv: identical builders and runtime stages up to the
    LABEL, so buildah's layer cache builds it once and both images store it once."""
    worker, operator = (stages_of(name) for name in sorted(IMAGES, reverse=True))
    assert worker[0] == operator[0]
    def shared(stages: list[Stage]) -> list[tuple[str, str]]:
        runtime = stages[-1].instructions
        return runtime[:next(i for i, (kw, _) in enumerate(runtime) if kw == "LABEL")]
    assert shared(worker) == shared(operator)
    assert [kw for kw, _ in worker[-1].instructions][-2:] == ["LABEL", "ENTRYPOINT"]


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
    assert {"!pyproject.toml", "!setup.py", "!README.md", "!operator/",
            *(f"!images/{lock}" for lock in LOCKS)} <= set(rules)


def test_parser_reads_a_known_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text('ARG BASE=a:1\nFROM ${BASE} AS builder\nRUN x \\\n  y\n# c\n'
                    'FROM $BASE\nUSER 1:2\nENTRYPOINT ["/bin/z"]\n')
    dockerfile = parse_file(path)
    builder, runtime = dockerfile.stages
    assert dockerfile.args == {"BASE": "a:1"}
    assert [dockerfile.base_of(s) for s in dockerfile.stages] == ["a:1", "a:1"]
    assert (builder.name, builder.instructions) == ("builder", [("RUN", "x y")])
    assert runtime.instructions == [("USER", "1:2"), ("ENTRYPOINT", '["/bin/z"]')]
