"""The ``prodml`` command line: thin Typer commands over the library."""
