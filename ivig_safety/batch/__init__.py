"""Check many plans in one run: sources (files, folders, stdin), row decoding, workers, writers, the summary.

A shell over ivig_safety.check: may import check, formats, knowledge and model; only cli imports it.
"""

from .workers import *  # noqa: F401,F403  (replaced by per-module imports when workers.py is split)
from .workers import __all__  # noqa: F401
