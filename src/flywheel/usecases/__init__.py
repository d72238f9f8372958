"""Use cases: problem-specific plug-ins the platform runs, chosen by ``use_case:`` in the config.

A use case is named by a built-in short name or by a dotted path ``package.module`` (its attribute
``USE_CASE``) or ``package.module:ATTRIBUTE``; it is imported only when first asked for, as Feast
picks a backend. See :class:`flywheel.usecases.spec.UseCase` for what one defines.
"""

from __future__ import annotations

import functools
import importlib

from flywheel.errors import ConfigError
from flywheel.usecases.spec import UseCase

BUILT_IN = {"churn": "flywheel.usecases.churn", "bank": "flywheel.usecases.bank"}


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
        module = importlib.import_module(module_name)
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
