"""``python -m prodml`` runs the CLI."""

from prodml.cli.app import main

main()
