"""The ``usarchive`` command line: thin commands that parse, call the library, print."""

from archive.cli.main import main

__all__ = ["main"]
