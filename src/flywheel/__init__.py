"""Flywheel: a local-first MLOps loop for tabular models, one plug-in per use case.

Sub-packages, one per concern: ``data`` (generation, ingestion, validation, the lake).
"""

__version__ = "0.1.0"
