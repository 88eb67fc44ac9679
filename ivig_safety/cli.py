"""The ``ivig-safety`` command: a thin shell over :class:`ivig_safety.Checker`; nothing clinical happens here.

Exit codes: 0 ok, 1 warn, 3 block; 2 invalid input or usage (message on stderr naming the field, no verdict on
stdout); 4 internal error (anything that went wrong inside the check or while rendering the report: one line
``error: internal error, no verdict: ...`` on stderr, nothing on stdout, never a traceback, never a verdict's code).

A plan file is read up to ``MAX_PLAN_BYTES`` (1 MiB); a larger input (``check /dev/zero``) is refused before it is
parsed. Every message on stderr goes through :func:`render.clean_text`: it may echo the input.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO, NoReturn

import click

from .check import Checker, get_checker
from .errors import EngineError, InvalidPlanError, RuleFileError
from .render import clean_text, console, render_json, render_text
from .yamlio import YamlError, parse_yaml

EXIT_OK, EXIT_WARN, EXIT_INVALID, EXIT_BLOCK, EXIT_INTERNAL = 0, 1, 2, 3, 4
VERDICT_EXIT = {"ok": EXIT_OK, "warn": EXIT_WARN, "block": EXIT_BLOCK}
#: The largest plan file ``check`` reads: a plan is a few hundred bytes. Reading stops at this plus one byte.
MAX_PLAN_BYTES = 1 << 20


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {clean_text(message, keep_newlines=True)}", err=True)
    sys.exit(code)


def internal_error(exc: BaseException) -> NoReturn:
    """Exit 4 with one line naming the exception: no traceback, no verdict."""
    detail = clean_text(" ".join(str(exc).split()))[:300]
    fail(f"internal error, no verdict: {type(exc).__name__}" + (f": {detail}" if detail else ""), EXIT_INTERNAL)


def _read_limited(stream: BinaryIO) -> bytes:
    data = stream.read(MAX_PLAN_BYTES + 1)
    return data if data is not None else b""


def read_document(source: str) -> Any:
    """Read a YAML or JSON document from a path or '-' (stdin); a malformed, empty or over-large (more than
    ``MAX_PLAN_BYTES``) file is invalid input."""
    try:
        if source == "-":
            raw = _read_limited(sys.stdin.buffer)
        else:
            with open(source, "rb") as stream:
                raw = _read_limited(stream)
    except OSError as exc:
        fail(f"{source}: cannot read: {exc.strerror or exc}")
    except MemoryError:
        fail(f"{source}: cannot read: out of memory")
    if len(raw) > MAX_PLAN_BYTES:
        fail(f"{source}: larger than {MAX_PLAN_BYTES // (1 << 20)} MiB, the limit for one plan: not read")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        fail(f"{source}: not UTF-8 text")
    if not text.strip():
        fail(f"{source}: the file is empty")
    try:
        return parse_yaml(text)
    except YamlError as exc:
        fail(f"{source}: malformed YAML/JSON: {exc}")


def load_checker(policy: str | None) -> Checker:
    try:
        return get_checker(None, policy)
    except RuleFileError as exc:
        fail(f"rule or policy file: {exc}")
    except OSError as exc:
        fail(f"cannot read rule or policy files: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug while loading: exit 4, not a traceback
        internal_error(exc)
    raise AssertionError("unreachable")


policy_option = click.option("--policy", type=click.Path(exists=True, dir_okay=False),
                             help="Site policy file overlaid on rules/policy.yaml.")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the package, the rule set it loads (version and sha256), the engine and the Python running it."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    from . import __version__
    from .engine import ENGINE_VERSION

    checker = load_checker(None)
    ruleset = checker.ruleset
    where = "bundled" if checker.rules_dir.resolve() == _bundled().resolve() else f"from {checker.rules_dir}"
    click.echo(f"ivig-safety {__version__}\n"
               f"rule set {ruleset.version} sha256:{ruleset.sha256} ({where})\n"
               f"engine {ENGINE_VERSION}\n"
               f"Python {platform.python_version()} ({platform.python_implementation()})")
    ctx.exit(0)


def _bundled() -> Any:
    from .check import bundled_rules_dir

    return bundled_rules_dir()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the package, rule set (version and sha256), engine and Python versions, and exit.")
def main() -> None:
    """Check IVIG infusion plans against the package insert.

    Shell completion: eval "$(_IVIG_SAFETY_COMPLETE=bash_source ivig-safety)" (zsh_source, fish_source)."""


@main.command()
@click.argument("plan", type=str)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: the report for people (schedule as a table); json: the Report model, for programs.")
@click.option("--explain", is_flag=True, help="Show, per finding, the facts that made the rule fire.")
@policy_option
def check(plan: str, fmt: str, explain: bool, policy: str | None) -> None:
    """Check PLAN (a YAML or JSON file of at most 1 MiB, or - for stdin).

    \b
    Exit codes:
      0  ok: no warning or critical finding
      1  warn: at least one warning
      3  block: at least one critical finding
      2  invalid input or usage: stderr names the field; no verdict
      4  internal error: no verdict"""
    data = read_document(plan)
    checker = load_checker(policy)
    try:
        report, why = checker.explain(data) if explain else (checker.check(data), None)
    except InvalidPlanError as exc:
        lines = "\n".join(f"  {clean_text(e)}" for e in exc.errors)
        fail(f"{plan}: invalid plan, not checked:\n{lines}")
    except EngineError as exc:
        internal_error(exc)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the plan has no verdict: exit 4, never 0/1/3
        internal_error(exc)
    try:  # render completely before writing anything, so a failure leaves stdout empty
        code = VERDICT_EXIT[report.verdict]
        if fmt == "json":
            output = render_json(report) + "\n"
        else:
            out = console()
            with out.capture() as captured:
                out.print(render_text(report, why))
            output = captured.get()
    except Exception as exc:  # noqa: BLE001
        internal_error(exc)
    _write_stdout(output)
    sys.exit(code)


def _write_stdout(text: str) -> None:
    """Write the report; a stdout that cannot encode it gets escapes, a closed pipe (``| head``) no traceback."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:
            encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
            sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
        sys.stdout.flush()
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@main.command("risk-factors")
def risk_factors() -> None:
    """List the risk factors a plan may name."""
    checker = load_checker(None)
    for name, description in checker.vocabulary.risk_factors.items():
        click.echo(f"{name:34} {description}")


# The other commands live in their own modules and register themselves on ``main`` when imported.
from . import batch_cli, catalogue_cli  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    # Run as `python -m ivig_safety.cli`, this file is __main__, while the command modules registered their commands
    # on the imported ivig_safety.cli; run that one.
    from ivig_safety.cli import main as registered_main

    registered_main()
