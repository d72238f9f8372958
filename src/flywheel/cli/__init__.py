"""The ``flywheel`` command line: a thin Typer layer over the importable operations."""
