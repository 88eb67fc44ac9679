"""``ivig-safety batch``: check a file of orders, one result row per input row, and a summary at the end.

Exit codes: 0 when every row was written (findings are data, not failure); with ``--fail-on`` the worst row at or
above the threshold decides: 1 warn, 3 block, 2 error (a row that could not be checked), on the scale
warn < block < error, because an unchecked order may hide anything. 2 also when the input cannot be read at all
(nothing is written then); 4 when the output cannot be written; 130 when interrupted (the rows finished so far are
written and counted). Messages and the summary go to stderr, results to stdout or ``--output``.
"""

from __future__ import annotations

import gc
import sys
import time
from contextlib import nullcontext
from typing import Any, BinaryIO

import click
from rich.console import Console
from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from .batch import WRITERS, BatchInputError, Source, Summary, encoded_batches, open_source
from .cli import (EXIT_BLOCK, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_WARN, fail, load_checker, main,
                  policy_option)

EXIT_INTERRUPTED = 130
#: --fail-on thresholds: a level fails the run on itself and on every level after it.
FAIL_LEVELS = ("warn", "block", "error")
FAIL_EXIT = {"warn": EXIT_WARN, "block": EXIT_BLOCK, "error": EXIT_INVALID}


def exit_code(summary: Summary, fail_on: str | None) -> int:
    """0 unless ``fail_on`` is set and some row is at or above it; then the exit code of the worst such row."""
    if fail_on is None:
        return EXIT_OK
    for level in reversed(FAIL_LEVELS[FAIL_LEVELS.index(fail_on):]):
        if summary.verdicts.get(level):
            return FAIL_EXIT[level]
    return EXIT_OK


def summary_table(summary: Summary) -> Table:
    """Rows and verdicts, then per finding kind and per rule the number of rows it appears in."""
    counts = summary.as_dict()
    table = Table(title="ivig-safety batch", title_justify="left", show_header=True, header_style="bold")
    for name in ("rows", "ok", "warn", "block", "error"):
        table.add_column(name, justify="right")
    table.add_row(*(str(counts[n]) for n in ("rows", "ok", "warn", "block", "error")))
    detail = Table(show_header=True, header_style="bold", title_justify="left")
    detail.add_column("finding kind / rule")
    detail.add_column("rows", justify="right")
    for kind, count in sorted(summary.kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        detail.add_row(f"kind {kind}", str(count))
    for rule, count in sorted(summary.rules.items(), key=lambda kv: (-kv[1], kv[0])):
        detail.add_row(f"rule {rule}", str(count))
    outer = Table.grid(padding=(1, 0))
    outer.add_row(table)
    if summary.kinds or summary.rules:
        outer.add_row(detail)
    return outer


class _ProgressReporter:
    """A progress bar on stderr (rows, rows/s, ETA from the bytes or files read), refreshed at most 10 times a
    second so it costs nothing per row."""

    def __init__(self, source: Source, console: Console):
        self.source = source
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.fields[rows]:>9,} rows"), BarColumn(),
            TextColumn("{task.fields[rate]:>7,.0f} rows/s"), TextColumn("ETA"), TimeRemainingColumn(),
            TimeElapsedColumn(), console=console, transient=True, refresh_per_second=8)
        self.task: TaskID = self.progress.add_task("batch", total=source.total, rows=0, rate=0.0)
        self.started = self.last = time.monotonic()
        self.rows = 0

    def __enter__(self) -> "_ProgressReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.update(force=True)
        self.progress.stop()

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.update()

    def update(self, force: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.progress.update(self.task, completed=self.source.position, rows=self.rows,
                             rate=self.rows / elapsed, refresh=force)


@main.command()
@click.argument("input_path", metavar="INPUT", type=str)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Where to write the results (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Output format (default: csv for an --output ending in .csv, else jsonl).")
@click.option("--input-format", type=click.Choice(["auto", "jsonl", "csv"]), default="auto", show_default=True,
              help="Input format; auto uses the suffix, else the first line ('{' means JSON Lines).")
@click.option("--workers", "-j", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes (each loads its own rules).")
@click.option("--fail-on", type=click.Choice(FAIL_LEVELS), default=None,
              help="Exit non-zero if a row is at or above this level (warn < block < error).")
@click.option("--quiet", "-q", is_flag=True, help="No summary table on stderr.")
@policy_option
def batch(input_path: str, output: str | None, fmt: str | None, input_format: str, workers: int,
          fail_on: str | None, quiet: bool, policy: str | None) -> None:
    """Check every plan in INPUT: a JSON Lines file (one plan per line), a CSV file, a folder of plan files,
    or - for stdin. Writes one result row per input row, in input order."""
    load_checker(policy)  # a bad policy file is a usage error (exit 2) before anything is read or written
    # The rules, catalogue and unit registry live as long as this process: keep them out of every GC pass
    # (measured: a few per cent per row with one worker; workers do the same in their initializer).
    gc.freeze()
    try:
        source = open_source(input_path, input_format)
    except BatchInputError as exc:
        fail(str(exc))
        return
    if fmt is None:
        fmt = "csv" if output and output.lower().endswith(".csv") else "jsonl"
    err_console = Console(stderr=True, highlight=False)
    with source:
        try:
            stream: BinaryIO = sys.stdout.buffer if output in (None, "-") else open(output, "wb")  # noqa: SIM115
        except OSError as exc:
            fail(f"{output}: cannot write: {exc.strerror or exc}")
            return
        # workers start now, before the progress bar's thread exists (they are forked)
        batches = encoded_batches(source, fmt, workers=workers, policy=policy)
        summary = Summary()
        code: int | None = None
        show_progress = sys.stderr.isatty() and not quiet
        reporter = _ProgressReporter(source, err_console) if show_progress else None
        try:
            writer = WRITERS[fmt](stream)
            with reporter if reporter is not None else nullcontext():
                for data, tallies in batches:
                    writer.write_encoded(data)
                    for counts in tallies:
                        summary.add_tally(counts)
                    if reporter is not None:
                        reporter.advance(len(tallies))
            writer.close()
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
            click.echo(f"interrupted: the first {summary.rows} rows are written", err=True)
        except BatchInputError as exc:
            code = EXIT_INVALID
            click.echo(f"error: {exc}; {summary.rows} rows written", err=True)
        except BrokenPipeError:
            code = EXIT_INTERNAL
            sys.stderr.write(f"error: output closed after {summary.rows} rows\n")
        except OSError as exc:  # reading errors arrive as BatchInputError: this is the output failing
            code = EXIT_INTERNAL
            click.echo(f"error: cannot write the output: {exc.strerror or exc}; {summary.rows} rows written",
                       err=True)
        finally:
            getattr(batches, "close", lambda: None)()
            if stream is not sys.stdout.buffer:
                stream.close()
            else:
                _quiet_stdout_on_broken_pipe()
    if not quiet:
        err_console.print(summary_table(summary))
    sys.exit(code if code is not None else exit_code(summary, fail_on))


def _quiet_stdout_on_broken_pipe() -> None:
    """After a closed pipe (``| head``), keep Python from complaining again when it flushes stdout at exit."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
