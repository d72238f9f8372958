"""NannyML for the benchmarks, in a virtualenv of its own — never in the project's.

NannyML 0.13.1 pins ``lightgbm<4.6`` (the project has 4.7) and, left to pip, resolves pandas 3; it also
imports statsmodels without declaring it. So it is installed with pip into ``<project venv>/nannyml-venv``
(``$FLYWHEEL_NANNYML_VENV`` to put it elsewhere) with the pieces below pinned, and reused while the stamp
matches: a run pays the install once (about a minute from PyPI here). Its usage telemetry is switched off
in every process started through :func:`run_python`.

By hand: ``python benchmarks/nannyml_env.py`` installs (or reuses) it and prints its ``python`` path.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_logger = logging.getLogger(__name__)

NANNYML_VERSION = "0.13.1"
# Resolved by pip from PyPI on 2026-12-05; pandas and numpy at the project's versions, so both sides
# read the same Parquet files into the same dtypes.
REQUIREMENTS = (
    f"nannyml=={NANNYML_VERSION}",
    "pandas==2.3.3",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "statsmodels==0.15.0",  # imported by nannyml.plots, not declared
    "pyarrow==26.0.1",
)
_STAMP = "flywheel-nannyml.json"
_FOREIGN_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV")


def venv_dir() -> Path:
    """Where NannyML's virtualenv lives: beside the project's packages."""
    override = os.environ.get("FLYWHEEL_NANNYML_VENV")
    if override:
        return Path(override)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "nannyml-venv"
    return Path.home() / ".cache" / "flywheel" / "nannyml-venv"


def install(venv: Path | None = None) -> Path:
    """Install the pinned NannyML into ``venv`` unless a working install is there; returns its python.

    Raises:
        RuntimeError: pip failed; the message carries the end of its output.
    """
    venv = venv or venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv / "bin" / "python"
        if _works(venv):
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"installing NannyML into {venv} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        seconds = round(time.monotonic() - started, 1)
        (venv / _STAMP).write_text(
            json.dumps({"requirements": list(REQUIREMENTS), "install_seconds": seconds})
        )
        _logger.info("installed NannyML %s into %s in %.1f s", NANNYML_VERSION, venv, seconds)
        if not _works(venv):
            raise RuntimeError(f"NannyML was installed into {venv} but does not import")
        return python


def _works(venv: Path) -> bool:
    stamp = venv / _STAMP
    if not stamp.exists() or json.loads(stamp.read_text()).get("requirements") != list(REQUIREMENTS):
        return False
    try:
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import nannyml; print(nannyml.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [NANNYML_VERSION]


def clean_env() -> dict[str, str]:
    """The environment for NannyML's processes: none of the project's interpreter settings, no
    telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    return {**env, "NML_DISABLE_USAGE_LOGGING": "1"}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.stdout.write(f"{install()}\n")
