"""Flywheel: a local-first MLOps loop for tabular customer models.

Sub-packages, one per concern: ``data`` (generation, ingestion, validation, the lake).
"""

__version__ = "0.1.0"
