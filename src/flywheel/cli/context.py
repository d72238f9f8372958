"""State shared by CLI commands: global options, the effective config, progress display."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from flywheel.config import FlywheelConfig, load_config
from flywheel.errors import ConfigError
from flywheel.workdir import Workdir

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    config_path: Path | None = None
    workdir: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False

    def config(self, **overrides: Any) -> FlywheelConfig:
        """The effective config: file, then ``--set`` values, then the command's own options."""
        extra = {k: v for k, v in overrides.items() if v is not None}
        return load_config(self.config_path, {**self.overrides, **extra})

    def workdir_for(self, config: FlywheelConfig, must_exist: bool = True) -> Workdir:
        """The workdir of this run. Only the commands that start one (data generate, data ingest,
        demo) pass ``must_exist=False``; the others refuse a missing one rather than create it."""
        workdir = Workdir.at(self.workdir if self.workdir is not None else config.workdir)
        workdir.check(must_exist)
        return workdir


STATE = CliState()


def parse_sets(values: list[str]) -> dict[str, Any]:
    """``--set data.generator.seed=7`` values; the right side is read as YAML (7 → int)."""
    parsed = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. data.generator.seed=7")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML; quote it to pass a string, "
                "e.g. --set \"serving.admin_token='a:b'\""
            ) from None
    return parsed


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


@contextmanager
def progress(title: str) -> Iterator[Any]:
    """A spinner with the current stage and elapsed time; yields a ``stage(text)`` callback."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(title)
        yield lambda stage: bar.update(task, description=f"{title}: {stage}")
