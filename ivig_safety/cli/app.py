"""The ``ivig-safety`` click group: ``--version``, and every command, each from its own module, added here.

The command modules know nothing of this group (they import only options.py), so there is no import circle.
"""

from __future__ import annotations

from typing import Any

import click

from . import batch, catalogue, check, feedback, serve
from .options import load_checker


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the package, the rule set it loads (version and sha256), the engine, the Python running it, and
    whether the pipeline is compiled (mypyc, an installed wheel) or Python source (a checkout)."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    from .. import __version__, compiled
    from ..pipeline.engine import ENGINE_VERSION

    checker = load_checker(None)
    ruleset = checker.ruleset
    where = "bundled" if checker.rules_dir.resolve() == _bundled().resolve() else f"from {checker.rules_dir}"
    click.echo(f"ivig-safety {__version__}\n"
               f"rule set {ruleset.version} sha256:{ruleset.sha256} ({where})\n"
               f"engine {ENGINE_VERSION}\n"
               f"Python {platform.python_version()} ({platform.python_implementation()})\n"
               f"pipeline {'compiled (mypyc)' if compiled else 'Python source'}")
    ctx.exit(0)


def _bundled() -> Any:
    from ..check import bundled_rules_dir

    return bundled_rules_dir()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the package, rule set (version and sha256), engine and Python versions, whether the "
                   "pipeline is compiled, and exit.")
def main() -> None:
    """Check IVIG infusion plans against the package insert.

    Shell completion: eval "$(_IVIG_SAFETY_COMPLETE=bash_source ivig-safety)" (zsh_source, fish_source)."""


for command in (check.check, check.risk_factors, batch.batch, catalogue.products, catalogue.rules_group,
                catalogue.schema, serve.serve, feedback.feedback_report):
    main.add_command(command)
