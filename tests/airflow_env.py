"""Apache Airflow for the tests, in a virtualenv of its own — never in the project's.

Airflow pins its own dependency set, so it is installed into a virtualenv of its own,
``<project venv>/airflow-venv`` (``$FLYWHEEL_AIRFLOW_VENV`` to put it elsewhere), and reused while it
holds the pinned version: repeated test runs and CI on the same machine pay the install once. uv installs
it where the project's venv has uv (``make install`` puts it there): about 5 s from PyPI here, against
30 s for pip, which installs it otherwise (the same versions, pinned below). Airflow's
constraints files live on GitHub, which CI cannot reach; the packages the tests depend on are pinned
below instead. Each test run gets an ``AIRFLOW_HOME`` of its own with SQLite metadata (``airflow db
migrate``); no webserver or scheduler runs: ``airflow dags test`` executes a DAG run in one process.

By hand: ``python -m tests.airflow_env`` installs (or reuses) it and prints the ``airflow`` path.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_logger = logging.getLogger(__name__)

AIRFLOW_VERSION = "3.3.2"
# Resolved by pip from PyPI on 2026-12-04 without conflicts (uv resolves the same versions); pinned so
# that a new release of Airflow's own pieces (or of the metadata and execution-API stack under them)
# cannot change the tests' Airflow.
REQUIREMENTS = (
    f"apache-airflow=={AIRFLOW_VERSION}",
    f"apache-airflow-core=={AIRFLOW_VERSION}",
    "apache-airflow-task-sdk==1.3.2",
    "apache-airflow-providers-standard==1.21.0",  # BashOperator
    "sqlalchemy==2.1.9",
    "alembic==1.20.1",
    "pydantic==2.14.4",
    "fastapi==0.136.3",  # `dags test` runs tasks through the execution API in process
)
# written last, with the install's duration: a venv without it is a broken install
_STAMP = "flywheel-airflow.json"
# the project's interpreter settings must not leak into Airflow's
_FOREIGN_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV")


def venv_dir() -> Path:
    """Where Airflow's virtualenv lives: beside the project's packages, so ``make clean`` keeps it."""
    override = os.environ.get("FLYWHEEL_AIRFLOW_VENV")
    if override:
        return Path(override)
    if sys.prefix != sys.base_prefix:  # running in the project's virtualenv
        return Path(sys.prefix) / "airflow-venv"
    return Path.home() / ".cache" / "flywheel" / "airflow-venv"


def install(venv: Path | None = None) -> Path:
    """Install the pinned Airflow into ``venv`` unless a working install is there; returns ``airflow``.

    Concurrent callers wait for one another (a lock beside the venv); a half-finished install is wiped
    and redone.

    Raises:
        RuntimeError: the install failed; the message carries the end of its output.
    """
    venv = venv or venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(venv):
            return venv / "bin" / "airflow"
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        uv = _uv()
        # uv needs no pip in the venv; bytecode is compiled at install, as pip does
        venv_options = ["--without-pip"] if uv else []
        subprocess.run([sys.executable, "-m", "venv", *venv_options, str(venv)], check=True, env=_clean_env())
        python = str(venv / "bin" / "python")
        if uv:
            command = [*uv, "pip", "install", "--quiet", "--python", python, "--compile-bytecode"]
        else:
            command = [python, "-m", "pip", "install", "--quiet"]
        done = subprocess.run([*command, *REQUIREMENTS], capture_output=True, text=True, env=_clean_env())
        if done.returncode != 0:
            raise RuntimeError(
                f"installing Airflow into {venv} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        seconds = round(time.monotonic() - started, 1)
        installer = "uv" if uv else "pip"
        (venv / _STAMP).write_text(
            json.dumps(
                {"requirements": list(REQUIREMENTS), "installer": installer, "install_seconds": seconds}
            )
        )
        _logger.info(
            "installed Airflow %s into %s with %s in %.1f s", AIRFLOW_VERSION, venv, installer, seconds
        )
        if not _works(venv):
            raise RuntimeError(f"Airflow was installed into {venv} but `airflow version` does not report it")
        return venv / "bin" / "airflow"


def _uv() -> list[str] | None:
    """The command that runs uv from this interpreter's environment, or None where it has no uv."""
    if importlib.util.find_spec("uv") is None:
        return None
    command = [sys.executable, "-m", "uv"]
    try:
        subprocess.run([*command, "--version"], capture_output=True, check=True, timeout=60, env=_clean_env())
    except (OSError, subprocess.SubprocessError):
        return None
    return command


def _works(venv: Path) -> bool:
    stamp = venv / _STAMP
    if not stamp.exists() or json.loads(stamp.read_text()).get("requirements") != list(REQUIREMENTS):
        return False
    try:
        done = subprocess.run(
            [str(venv / "bin" / "airflow"), "version"],
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [AIRFLOW_VERSION]


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV and not k.startswith("AIRFLOW")}
    return {**env, **(extra or {})}


@dataclass(frozen=True)
class AirflowHome:
    """One ``AIRFLOW_HOME`` (SQLite metadata, a DAGs folder) and the ``airflow`` command to use on it."""

    airflow: Path
    home: Path
    env: dict[str, str]

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"

    @classmethod
    def create(
        cls, folder: Path, airflow: Path | None = None, settings: Mapping[str, str] | None = None
    ) -> AirflowHome:
        """A migrated home in ``folder``; ``settings`` are Airflow options as ``{"core.name": value}``.

        Args:
            folder: An empty folder for the home.
            airflow: The ``airflow`` executable (default: :func:`install`'s).
            settings: Airflow configuration, passed as ``AIRFLOW__SECTION__KEY`` variables.
        """
        airflow = airflow or install()
        (folder / "dags").mkdir(parents=True, exist_ok=True)
        options = {
            "core.dags_folder": str(folder / "dags"),
            "core.load_examples": "False",
            "database.sql_alchemy_conn": f"sqlite:///{folder / 'airflow.db'}",
            **(settings or {}),
        }
        variables = {"AIRFLOW_HOME": str(folder)}
        for name, value in options.items():
            section, key = name.split(".", 1)
            variables[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        home = cls(airflow, folder, _clean_env(variables))
        home.run("db", "migrate")
        return home

    def run(
        self, *args: str, check: bool = True, timeout: float = 300, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS`` on this home; ``env`` adds variables (the tasks inherit them).

        The command runs in a process group of its own: a timeout or an interrupted test kills it with
        the task processes it started (``dags test`` runs each task's command as a child of its own).

        Raises:
            RuntimeError: ``check`` and the command failed; the message carries the end of its output.
            subprocess.TimeoutExpired: the command ran longer than ``timeout`` seconds.
        """
        command = [str(self.airflow), *args]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            _kill_group(process)
            raise
        done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if check and done.returncode != 0:
            output = done.stdout[-4000:] + done.stderr[-4000:]
            raise RuntimeError(f"airflow {' '.join(args)} exited {done.returncode}:\n{output}")
        return done


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` and every process of its group (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError):  # all of them have exited already
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.stdout.write(f"{install()}\n")
