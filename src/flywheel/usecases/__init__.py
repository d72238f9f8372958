"""Use cases: problem-specific plug-ins the platform runs, chosen by ``use_case:`` in the config.

A use case is named by a built-in short name or by a dotted path ``package.module`` (its attribute
``USE_CASE``) or ``package.module:ATTRIBUTE``, importable from the Python path or the current
directory; it is imported only when first asked for, as Feast picks a backend. See
:class:`flywheel.usecases.spec.UseCase` for what one defines.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from types import ModuleType

from flywheel.errors import ConfigError
from flywheel.usecases.spec import UseCase

BUILT_IN = {"churn": "flywheel.usecases.churn", "bank": "flywheel.usecases.bank", "credit": "flywheel.usecases.credit"}  # noqa: E501  # fmt: skip


def _import(module_name: str) -> ModuleType:
    """Import ``module_name``; a module not on the path is also looked for in the current directory
    (a project's own use case, run from the project folder, as ``python -m`` would find it)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = str(Path.cwd())
        if not (error.name and module_name.startswith(error.name)) or here in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


@functools.cache
def load(name: str) -> UseCase:
    """The use case ``name`` (a short name or a dotted path), imported once."""
    path = BUILT_IN.get(name, name)
    module_name, _, attribute = path.partition(":")
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"use_case: {name!r} is not a use case; expected one of {sorted(BUILT_IN)} or a dotted path"
        )
    try:
        module = _import(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ConfigError(
                f"use_case: cannot import {module_name!r}; expected one of {sorted(BUILT_IN)} or a dotted "
                "path to a module defining USE_CASE"
            ) from None
        raise
    spec = getattr(module, attribute or "USE_CASE", None)
    if not isinstance(spec, UseCase):
        raise ConfigError(
            f"use_case: {path!r} has no UseCase named {attribute or 'USE_CASE'} (got {type(spec).__name__})"
        )
    return spec
