"""What every command shares: the exit codes, the one way to fail (a cleaned line on stderr, never a traceback),
loading the checker, and the ``--policy`` option. Imports nothing from the command modules.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ..check import Checker, get_checker
from ..formats.render import clean_text
from ..model.errors import RuleFileError

EXIT_OK, EXIT_WARN, EXIT_INVALID, EXIT_BLOCK, EXIT_INTERNAL = 0, 1, 2, 3, 4
VERDICT_EXIT = {"ok": EXIT_OK, "warn": EXIT_WARN, "block": EXIT_BLOCK}


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {clean_text(message, keep_newlines=True)}", err=True)
    sys.exit(code)


def internal_error(exc: BaseException) -> NoReturn:
    """Exit 4 with one line naming the exception: no traceback, no verdict."""
    detail = clean_text(" ".join(str(exc).split()))[:300]
    fail(f"internal error, no verdict: {type(exc).__name__}" + (f": {detail}" if detail else ""), EXIT_INTERNAL)


def load_checker(policy: str | None, site_codes: str | None = None) -> Checker:
    try:
        return get_checker(None, policy, site_codes)
    except RuleFileError as exc:
        fail(f"rule, policy or site codes file: {exc}")
    except OSError as exc:
        fail(f"cannot read rule or policy files: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug while loading: exit 4, not a traceback
        internal_error(exc)
    raise AssertionError("unreachable")


policy_option = click.option("--policy", type=click.Path(exists=True, dir_okay=False),
                             help="Site policy file overlaid on rules/policy.yaml.")
site_codes_option = click.option(
    "--site-codes", type=click.Path(exists=True, dir_okay=False),
    help="Site mapping file for FHIR input: local medication codes per product, and additions to the code lists.")
