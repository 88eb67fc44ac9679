"""The command line, ``ivig-safety``: one module per command group (check, batch, catalogue), options.py shared
by them all, app.py the one click group that adds them. A shell: imports anything below (check, batch, formats,
knowledge, model); nothing imports it.
"""

from .app import main

__all__ = ["main"]
