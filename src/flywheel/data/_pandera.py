"""pandera, imported without pandas-on-Spark.

pandera imports ``pyspark.pandas`` whenever PySpark is installed (``flywheel[spark]``), which costs
every command about half a second and patches pandas; Flywheel validates pandas frames only. The
import is refused for pandera's own import and allowed again afterwards.
"""

from __future__ import annotations

import sys
from types import ModuleType


def load() -> ModuleType:
    blocked = "pyspark.pandas" not in sys.modules
    if blocked:
        sys.modules["pyspark.pandas"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import pandera.pandas
    finally:
        if blocked:
            del sys.modules["pyspark.pandas"]
    return pandera.pandas
