"""The `riprap` command line and its tooling: the demo and the benchmark cases.

Private: nothing here is part of the library's API, and the library never imports it.
"""

from .main import main

__all__ = ["main"]
