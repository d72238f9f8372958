"""``python -m flywheel`` runs the CLI."""

from flywheel.cli.main import main

main()
