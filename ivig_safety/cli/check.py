"""``ivig-safety check`` and ``risk-factors``: a thin shell over :class:`ivig_safety.Checker`; nothing clinical
happens here.

Exit codes: 0 ok, 1 warn, 3 block; 2 invalid input or usage (message on stderr naming the field, no verdict on
stdout); 4 internal error (anything that went wrong inside the check or while rendering the report: one line
``error: internal error, no verdict: ...`` on stderr, nothing on stdout, never a traceback, never a verdict's code).

A plan file is read up to ``MAX_PLAN_BYTES`` (1 MiB); a larger input (``check /dev/zero``) is refused before it is
parsed. Every message on stderr goes through :func:`render.clean_text`: it may echo the input.
"""

from __future__ import annotations

import atexit
import functools
import gc
import sys
from typing import Any, BinaryIO, Callable

import click

from ..check import collector_paused
from ..formats.render import clean_text, console, render_json, render_text
from ..knowledge.yamlio import JsonSyntaxError, YamlError, parse_json, parse_yaml
from ..model.errors import EngineError, InvalidPlanError
from .options import VERDICT_EXIT, fail, internal_error, load_checker, policy_option, site_codes_option

#: The largest plan file ``check`` reads: a plan is a few hundred bytes. Reading stops at this plus one byte.
MAX_PLAN_BYTES = 1 << 20


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
        if text.lstrip("\ufeff \t\r\n").startswith("{"):  # JSON (a FHIR Bundle): the C decoder, not YAML's parser
            try:
                return parse_json(text)
            except JsonSyntaxError:
                pass  # a YAML flow mapping ({product: ...}) is not JSON: read it as YAML below
        return parse_yaml(text)
    except YamlError as exc:
        fail(f"{source}: malformed YAML/JSON: {exc}")


def _collector_paused(command: Callable[..., None]) -> Callable[..., None]:
    """Run ``command`` with the cyclic garbage collector paused, and switched on again when it returns.

    Why: ``check`` loads the rule set, catalogue and engine (tens of thousands of objects, all alive until the
    process ends), checks one plan and exits. A collector pass meanwhile frees nothing: it walks live objects again,
    and the full pass that loading the rule set sets off walks the whole heap of pydantic, pint and fhir.resources
    too (measured: 15-20 ms of CPU, about a fifth of what the command does beyond importing). What one plan (at most
    ``MAX_PLAN_BYTES``) leaves behind is bounded, and is collected when the collector runs again: at once, for a
    caller that runs the command in process (click's test runner, a program calling ``main``), or at exit."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        with collector_paused():
            return command(*args, **kwargs)

    return run


#: Set once ``check`` has registered :func:`gc.freeze` to run at exit (see :func:`_frozen_at_exit`).
_FREEZE_AT_EXIT_REGISTERED: list[bool] = []


def _frozen_at_exit(command: Callable[..., None]) -> Callable[..., None]:
    """Once ``command`` has run in a process, freeze what is alive when the process exits, so the interpreter's
    last garbage collection does not walk it.

    Why: at shutdown the interpreter collects once more over every object still alive, and frees the cycles among
    them (every module's classes and functions), only for the process to end: for ``check``'s heap (pydantic, pint,
    fhir.resources, rich, the loaded rule set) measured at 35-40 ms of CPU, a third of the command's cost beyond
    its imports before this. :func:`gc.freeze`, run as an atexit handler, moves them out of the collector's sight;
    their memory goes back to the system with the process. Nothing a user sees depends on that collection: the
    report or the error is written and flushed before the exit, the interpreter flushes stdout and stderr in any
    case, other atexit handlers and ``weakref.finalize`` callbacks still run, and Python never promises ``__del__``
    for objects alive at exit. Registered once, and only by this command: a program that runs it in process (click's
    test runner, a program calling ``main``) is frozen only when that program itself exits."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        if not _FREEZE_AT_EXIT_REGISTERED:
            _FREEZE_AT_EXIT_REGISTERED.append(True)
            atexit.register(gc.freeze)
        return command(*args, **kwargs)

    return run


@click.command()
@click.argument("plan", type=str)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: the report for people (schedule as a table); json: the Report model, for programs.")
@click.option("--explain", is_flag=True, help="Show, per finding, the facts that made the rule fire.")
@policy_option
@site_codes_option
@_frozen_at_exit
@_collector_paused
def check(plan: str, fmt: str, explain: bool, policy: str | None, site_codes: str | None) -> None:
    """Check PLAN (a YAML or JSON file of at most 1 MiB, or - for stdin): an ivig-safety plan, or a FHIR R4
    MedicationRequest or Bundle (detected by its resourceType).

    \b
    Exit codes:
      0  ok: no warning or critical finding
      1  warn: at least one warning
      3  block: at least one critical finding
      2  invalid input or usage: stderr names the field; no verdict
      4  internal error: no verdict"""
    data = read_document(plan)
    checker = load_checker(policy, site_codes)
    try:
        report, why = checker.explain(data) if explain else (checker.check(data), None)
    except InvalidPlanError as exc:
        lines = "\n".join(f"  {clean_text(e)}" for e in exc.errors)
        what = "order" if isinstance(data, dict) and "resourceType" in data else "plan"
        fail(f"{plan}: invalid {what}, not checked:\n{lines}")
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


@click.command("risk-factors")
def risk_factors() -> None:
    """List the risk factors a plan may name."""
    checker = load_checker(None)
    for name, description in checker.vocabulary.risk_factors.items():
        click.echo(f"{name:34} {description}")
