"""The plotly.js bundle the ``plotly`` wheel ships (``plotly/package_data/plotly.min.js``): the
dashboard serves it, or copies it beside a static export, so the page needs no network.

Found through the import system's metadata without importing Plotly's Python package (a large
import the service never needs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flywheel.errors import FlywheelError

PLOTLY_JS = "plotly.min.js"


def plotly_js() -> Path:
    """The path of ``plotly.min.js``.

    Raises:
        FlywheelError: the ``plotly`` package is not installed, or ships no bundle.
    """
    spec = importlib.util.find_spec("plotly")  # a top-level name: found, not imported
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "package_data" / PLOTLY_JS
        if path.is_file():
            return path
    raise FlywheelError(
        "the dashboard's charts need plotly.js from the `plotly` package (≥ 5): pip install 'plotly>=5'"
    )
